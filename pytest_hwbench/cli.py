"""The ``hwbench`` console script: checks and tools that run outside a pytest session.

- ``hwbench recipes validate FILE...``   the same checks the plugin runs on ``--recipe``
- ``hwbench testbed``                    the machine fingerprint and the testbed name baselines use
- ``hwbench images build [TAG...]``      build the local Docker images the shipped recipes name
- ``hwbench baseline import-pytest-benchmark FILE...``   pytest-benchmark saved runs as baseline history
- ``hwbench reference-server ...``       the reference LLM server (a fake whose timing is known)
- ``hwbench report | compare | rerun | export``  the report stage (``pytest_hwbench/report/commands.py``)
- ``hwbench fleet``, ``hwbench mlflow upload``, ``hwbench dashboard``   team tools (``report/fleet_cli.py``)
- ``hwbench models list|tiny``           GGUF models a recipe selects; tiny test models
"""

from __future__ import annotations

import argparse
import json
import sys

from pytest_hwbench.errors import HwbenchInputError


def _validate(args: argparse.Namespace) -> int:
    from pytest_hwbench.recipe.validate_cmd import run

    return run(args.files)


def _testbed(args: argparse.Namespace) -> int:
    from pytest_hwbench.measure.fingerprint import collect_fingerprint, derive_testbed

    fp = collect_fingerprint()
    if args.json:
        print(json.dumps({"testbed": derive_testbed(fp), "fingerprint": fp}, indent=2, sort_keys=True))
    else:
        print(derive_testbed(fp))
    return 0


def _images(args: argparse.Namespace) -> int:
    from pytest_hwbench.errors import ServiceUnavailable
    from pytest_hwbench.services.local_images import build_local_images

    try:
        for line in build_local_images(args.tags):
            print(line)
    except ServiceUnavailable as err:
        print(f"hwbench images build: {err}", file=sys.stderr)
        return 1
    return 0


def _import_pytest_benchmark(args: argparse.Namespace) -> int:
    from pytest_hwbench.verdict.baseline import BaselineStore
    from pytest_hwbench.verdict.import_pytest_benchmark import import_files

    testbed = args.testbed
    if not testbed:
        from pytest_hwbench.measure.fingerprint import collect_fingerprint, derive_testbed

        testbed = derive_testbed(collect_fingerprint())
    store = BaselineStore(args.dir, testbed)
    runs = import_files(args.files, store, keep=args.keep, trials=args.trials)
    tests = {t for r in runs for t in r.records}
    print(f"imported {len(runs)} pytest-benchmark run(s), {len(tests)} test(s), as baseline sessions of testbed "
          f"{testbed!r} in {store.directory} (metric time_s; the last {args.keep} sessions kept per test)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reference-server"]:
        # Its options belong to the server module; hand them over untouched.
        from pytest_hwbench.reference_server import main as server_main

        return server_main(argv[1:])
    parser = argparse.ArgumentParser(prog="hwbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    recipes = sub.add_parser("recipes", help="recipe tools").add_subparsers(dest="recipes_command", required=True)
    validate = recipes.add_parser("validate", help="validate recipe files")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=_validate)
    testbed = sub.add_parser("testbed", help="print the testbed name (and fingerprint with --json)")
    testbed.add_argument("--json", action="store_true")
    testbed.set_defaults(func=_testbed)
    images = sub.add_parser("images", help="local Docker images").add_subparsers(dest="images_command",
                                                                                  required=True)
    build = images.add_parser("build", help="build the images the shipped recipes name from this machine's "
                                            "binaries (no registry needed)")
    build.add_argument("tags", nargs="*")
    build.set_defaults(func=_images)
    from pytest_hwbench.workloads.hardware import models_cmd

    models_cmd.add_parser(sub)
    sub.add_parser("reference-server", help="run the reference LLM server (see --help after the command)")
    from pytest_hwbench.report.commands import add_subcommands

    add_subcommands(sub)
    baseline = sub.add_parser("baseline", help="baseline tools").add_subparsers(dest="baseline_command",
                                                                               required=True)
    pb = baseline.add_parser("import-pytest-benchmark",
                             help="store pytest-benchmark JSON files (saved runs) as baseline sessions")
    pb.add_argument("files", nargs="+", help="pytest-benchmark JSON files (.benchmarks/*/NNNN_*.json)")
    pb.add_argument("--testbed", help="testbed name (default: this machine's, as `hwbench testbed` prints)")
    pb.add_argument("--dir", default="baselines", help="baseline directory (default: baselines)")
    pb.add_argument("--keep", type=int, default=5, help="sessions kept per test (default 5, as baseline.sessions)")
    pb.add_argument("--trials", type=int, default=3,
                    help="trials per session: consecutive blocks of the saved rounds (default 3)")
    pb.set_defaults(func=_import_pytest_benchmark)
    from pytest_hwbench.report import fleet_cli

    fleet_cli.add_fleet_parser(sub)
    fleet_cli.add_mlflow_parser(sub)
    fleet_cli.add_dashboard_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HwbenchInputError as err:
        print(f"hwbench {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
