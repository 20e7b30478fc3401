"""Command-line front ends for the team tools: ``hwbench fleet``, ``hwbench mlflow upload``, ``hwbench dashboard``.

``cli.py`` only registers these sub-commands; their options and work live here so that ``hwbench --help`` stays
fast (mlflow, scipy and Dash are imported only by the command that needs them).
"""

from __future__ import annotations

import argparse
import os
import sys

from pytest_hwbench.errors import HwbenchInputError


def _uri(args: argparse.Namespace) -> str | None:
    return args.mlflow or os.environ.get("MLFLOW_TRACKING_URI")


def add_fleet_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="compare identical machines: spread, ranking, outlier and its environment diff",
                       description="Per test and metric: per-machine medians with CIs, one-way random effects "
                                   "(ICC, F-test, best/worst ratio), the outlier machine with its environment "
                                   "diff, and the sessions per machine a firm answer needs.")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="run directories or report folders (instead of --mlflow)")
    p.add_argument("--mlflow", metavar="URI", help="tracking server (default $MLFLOW_TRACKING_URI when no RUN_DIR)")
    p.add_argument("--experiment", default="hwbench", help="MLflow experiment (default hwbench)")
    p.add_argument("--testbed", help="only this testbed")
    p.add_argument("--test", metavar="PATTERN", help="only tests matching this node-id pattern (fnmatch)")
    p.add_argument("--metric", metavar="PATTERN", help="only metrics matching this pattern (fnmatch)")
    p.add_argument("--last", type=int, metavar="N", help="only the newest N sessions")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--resolve", type=float, default=0.02,
                   help="smallest difference between machines worth finding, as a fraction (default 0.02)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--fail-on-outlier", action="store_true",
                   help="exit status 1 when a machine is found slower than the rest (for a CI job)")
    p.set_defaults(func=run_fleet)


def run_fleet(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.fleet import analyze_fleet, render_json, render_markdown, render_table
    from pytest_hwbench.report.fleet_data import load_mlflow, load_run_dirs

    if not 0 < args.alpha < 1 or not 0 < args.resolve < 1:
        raise HwbenchInputError("--alpha and --resolve must be between 0 and 1 (e.g. --alpha 0.05 --resolve 0.02)")
    if args.run_dirs:
        sessions = load_run_dirs(args.run_dirs)
        if args.last:
            sessions = sessions[-args.last:]
    else:
        uri = _uri(args)
        if not uri:
            raise HwbenchInputError("hwbench fleet needs run directories or --mlflow URI (or $MLFLOW_TRACKING_URI)")
        sessions = load_mlflow(uri, args.experiment, testbed=args.testbed, max_sessions=args.last)
    comparisons = analyze_fleet(sessions, testbed=args.testbed, test=args.test, metric=args.metric,
                                alpha=args.alpha, resolve=args.resolve)
    render = {"table": render_table, "markdown": render_markdown, "json": render_json}[args.format]
    text = render(comparisons)
    if args.output:
        from pathlib import Path

        from pytest_hwbench.atomic import write_bytes_atomic

        write_bytes_atomic(Path(args.output), text.encode("utf-8"))
        hosts = {s.host for s in sessions}
        print(f"hwbench fleet: {len(sessions)} sessions from {len(hosts)} hosts, {len(comparisons)} comparisons "
              f"-> {args.output}")
    else:
        sys.stdout.write(text)
    slower = [c for c in comparisons if c.outlier and c.outlier.direction == "slower"]
    return 1 if args.fail_on_outlier and slower else 0


def add_mlflow_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mlflow", help="MLflow tools (upload runs that could not be logged)")
    msub = p.add_subparsers(dest="mlflow_command", required=True)
    up = msub.add_parser("upload", help="log run directories that could not be logged when they ran",
                         description="Log reports/<run-id>/ directories to MLflow as the session would have; "
                                     "runs already on the server are skipped.")
    up.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or report folders")
    up.add_argument("--mlflow", metavar="URI", help="tracking URI (default $MLFLOW_TRACKING_URI)")
    up.add_argument("--experiment", default="hwbench")
    up.add_argument("--force", action="store_true", help="log again runs that are already there")
    up.add_argument("--probe-timeout", type=float, default=10.0, metavar="S",
                    help="seconds the server may take to answer the first request (default 10)")
    up.add_argument("--probe-retries", type=int, default=2, metavar="N", help="more tries, with backoff (default 2)")
    up.set_defaults(func=run_upload)


def run_upload(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.mlflow_upload import upload

    uri = _uri(args)
    if not uri:
        raise HwbenchInputError("hwbench mlflow upload needs --mlflow URI (or $MLFLOW_TRACKING_URI)")
    return upload(args.run_dirs, uri, args.experiment, force=args.force, probe_timeout_s=args.probe_timeout,
                  probe_retries=args.probe_retries)


def add_dashboard_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="web dashboard over an MLflow server (optional extra: dashboard)")
    p.add_argument("--mlflow", metavar="URI", help="tracking URI (default $MLFLOW_TRACKING_URI)")
    p.add_argument("--experiment", default="hwbench")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--refresh-s", type=float, default=60.0, help="re-read MLflow at most this often")
    p.set_defaults(func=run_dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    uri = _uri(args)
    if not uri:
        raise HwbenchInputError("hwbench dashboard needs --mlflow URI (or $MLFLOW_TRACKING_URI)")
    try:
        from pytest_hwbench_dashboard.app import serve
    except ImportError as err:
        raise HwbenchInputError(f"the dashboard needs Dash and Plotly ({err.name} is missing): "
                                "pip install 'pytest-hwbench[dashboard]'") from None
    return serve(uri, args.experiment, host=args.host, port=args.port, refresh_s=args.refresh_s)
