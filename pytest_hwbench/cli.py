"""The ``hwbench`` console script: checks and tools that run outside a pytest session.

- ``hwbench recipes validate FILE...``   the same checks the plugin runs on ``--recipe``
- ``hwbench testbed``                    the machine fingerprint and the testbed name baselines use
- ``hwbench images build [TAG...]``      build the local Docker images the shipped recipes name
- ``hwbench reference-server ...``       the reference LLM server (a fake whose timing is known)
"""

from __future__ import annotations

import argparse
import json
import sys


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
    sub.add_parser("reference-server", help="run the reference LLM server (see --help after the command)")
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
