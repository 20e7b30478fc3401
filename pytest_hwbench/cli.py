"""The ``hwbench`` console script: checks and tools that run outside a pytest session.

- ``hwbench recipes validate FILE...``   the same checks the plugin runs on ``--recipe``
- ``hwbench testbed``                    the machine fingerprint and the testbed name baselines use
- ``hwbench reference-server ...``       the reference LLM server (a fake whose timing is known)
- ``hwbench report | compare | rerun | export``  the report stage (``pytest_hwbench/report/commands.py``)
- ``hwbench fleet``, ``hwbench mlflow upload``, ``hwbench dashboard``   team tools (``report/fleet_cli.py``)
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
    sub.add_parser("reference-server", help="run the reference LLM server (see --help after the command)")
    from pytest_hwbench.report.commands import add_subcommands

    add_subcommands(sub)
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
