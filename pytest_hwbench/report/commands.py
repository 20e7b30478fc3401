"""The report-stage subcommands of the ``hwbench`` console script: ``report``, ``compare``, ``rerun``,
``export``. Each one's work lives in its own module; this file only declares the arguments."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _report(args: argparse.Namespace) -> int:
    from pytest_hwbench.errors import HwbenchError
    from pytest_hwbench.report.document import write_report
    from pytest_hwbench.report.run_data import resolve_run_dir

    try:
        md, html = write_report(resolve_run_dir(args.run, args.report_dir))
    except HwbenchError as err:
        print(f"hwbench report: {err}", file=sys.stderr)
        return 2
    print(html)
    print(md)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.compare import main

    return main(args)


def _rerun(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.rerun import main

    return main(args)


def _export(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.export import main

    return main(args)


def add_subcommands(sub: Any) -> None:
    """Register the subcommands on the ``hwbench`` parser's subparsers."""
    run_help = "run directory (reports/<run-id>), a run id under --report-dir, or 'latest'"
    report = sub.add_parser("report", help="(re)write report.md and report.html of a run")
    report.add_argument("run", help=run_help)
    report.add_argument("--report-dir", default="reports", help="where run ids are looked up (default: reports)")
    report.set_defaults(func=_report)

    compare = sub.add_parser("compare", help="compare two runs (or a baseline and a run) with the gate's "
                                             "statistics; exit 0 ok, 1 regression, 2 usage, 3 inconclusive "
                                             "under policy fail")
    compare.add_argument("a", help="reference: run dir, run id, 'latest', baseline file, testbed name, or "
                                   "mlflow:host=NAME / mlflow:testbed=NAME (newest logged session)")
    compare.add_argument("b", help="candidate, same forms as A")
    compare.add_argument("--format", choices=("table", "md", "json"), default="table")
    compare.add_argument("-o", "--output", help="write the output to this file (the summary line still prints)")
    compare.add_argument("--recipe", help="take tolerances and policies from this recipe (default: B's recipe)")
    compare.add_argument("--tolerance", type=float, help="tolerance for every metric (fraction, e.g. 0.05)")
    compare.add_argument("--inconclusive", choices=("fail", "warn"), help="inconclusive policy for every metric")
    compare.add_argument("--report-dir", default="reports")
    compare.add_argument("--baseline-dir", default="baselines")
    compare.add_argument("--mlflow-uri", help="for mlflow: sides (default: $MLFLOW_TRACKING_URI, else "
                                              "sqlite under --report-dir)")
    compare.set_defaults(func=_compare)

    rerun = sub.add_parser("rerun", help="re-execute a recorded run (same recipe, options, tests, environment)")
    rerun.add_argument("run", help=run_help)
    rerun.add_argument("--report-dir", default="reports")
    rerun.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    rerun.add_argument("--save-baseline", action="store_true", help="save baselines from the rerun")
    rerun.add_argument("--pytest-args", default="", metavar="ARGS",
                       help="extra pytest arguments, one string (e.g. --pytest-args='-x -v')")
    rerun.set_defaults(func=_rerun)

    export = sub.add_parser("export", help="a run as Prometheus text, Bencher BMF or pytest-benchmark JSON")
    export.add_argument("run", help=run_help)
    export.add_argument("--format", choices=("prometheus", "bmf", "pytest-benchmark"), required=True)
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--textfile-dir", help="prometheus: also write DIR/hwbench.prom for node-exporter")
    export.add_argument("--pushgateway", help="prometheus: also push to this Pushgateway (host:port or URL)")
    export.add_argument("--report-dir", default="reports")
    export.set_defaults(func=_export)
