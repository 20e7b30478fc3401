"""``hwbench rerun RUN``: run a recorded run again — same recipe text, options, tests and environment values.

At session end the controller records a *rerun bundle* in ``run.json`` (:func:`bundle`): the selected node
ids, the plugin's options, the values of the environment variables the recipe interpolated and of the
``HWBENCH_*`` variables (secrets by name only, never their values), the working directory, and a command
line that runs as is (``python -m pytest ...``). The recipe text and its sha256 are already in ``run.json``.

``hwbench rerun`` rebuilds the command from that bundle: the recipe file when it still has the recorded
hash, else the recorded text written to a temporary file; recorded environment values restored; secrets
taken from the current environment (an error naming them when unset); ``HWBENCH_RERUN_OF`` set so the new
run records which run it repeats. A rerun never saves baselines unless asked (``--save-baseline``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.interpolate import expand, is_secret_name

RERUN_OF_ENV = "HWBENCH_RERUN_OF"
#: Environment variables that change what a run does besides the recipe's own ${VAR}s.
_ENV_PREFIXES = ("HWBENCH_",)
_ENV_NAMES = ("MLFLOW_TRACKING_URI",)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def environment_used(recipe_text: str, environ: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(values of the non-secret variables that matter, names of the secret ones that were set)."""
    env = dict(os.environ if environ is None else environ)
    names = set(_VAR.findall(recipe_text)) | set(expand(recipe_text, env).used)
    names |= {k for k in env if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES}
    names.discard(RERUN_OF_ENV)
    values, secrets = {}, []
    for name in sorted(names):
        if name not in env:
            continue
        if is_secret_name(name):
            secrets.append(name)
        else:
            values[name] = env[name]
    return values, secrets


def bundle(*, node_ids: list[str], options: dict[str, Any], recipe_text: str, recipe_path: str | None,
           cwd: str, numprocesses: Any = None, python: str | None = None) -> dict[str, Any]:
    """The rerun bundle stored in ``run.json`` under ``rerun``."""
    env, secret_names = environment_used(recipe_text)
    args = (["--recipe", recipe_path] if recipe_path else []) + option_args(options, numprocesses)
    return {"node_ids": list(node_ids), "options": options, "numprocesses": numprocesses, "cwd": cwd,
            "env": env, "secret_env": secret_names, "rerun_of": os.environ.get(RERUN_OF_ENV),
            "argv": [python or sys.executable, "-m", "pytest", *args, *node_ids]}


def option_args(options: dict[str, Any], numprocesses: Any = None) -> list[str]:
    """Command-line arguments that restore the recorded plugin options (baselines are never saved)."""
    out: list[str] = []
    if options.get("testbed"):
        out += ["--hwbench-testbed", str(options["testbed"])]
    if options.get("repetitions"):
        out += ["--hwbench-repetitions", str(options["repetitions"])]
    if options.get("baseline_dir"):
        out += ["--hwbench-baseline-dir", str(options["baseline_dir"])]
    if options.get("report_dir"):
        out += ["--hwbench-report-dir", str(options["report_dir"])]
    if options.get("require_baseline"):
        out.append("--hwbench-require-baseline")
    if options.get("allow_parallel"):
        out.append("--hwbench-allow-parallel")
    if options.get("mlflow_enabled") is False:
        out.append("--no-hwbench-mlflow")
    elif options.get("mlflow_uri"):
        out += ["--hwbench-mlflow", str(options["mlflow_uri"])]
    if numprocesses not in (None, 0, "0"):
        out += ["-n", str(numprocesses)]
    return out


def plan(run_dir: str | Path, report_dir: str = "reports", *, save_baseline: bool = False,
         extra_args: list[str] | None = None,
         environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str], str, str | None]:
    """(argv, environment, cwd, temporary recipe file or None) for re-executing a recorded run."""
    from pytest_hwbench.report.run_data import load_run

    run = load_run(run_dir, report_dir)
    b = run.rerun
    where = str(run.dir / "run.json")
    if not b.get("node_ids"):
        raise HwbenchInputError("no rerun bundle (or no selected tests) recorded", file=where, field="rerun",
                                fix="runs recorded before pytest-hwbench recorded rerun bundles cannot be "
                                    "rerun; run the suite again")
    recipe = run.recipe
    text = recipe.get("text")
    if not isinstance(text, str):
        raise HwbenchInputError("the recipe text is missing", file=where, field="recipe.text",
                                fix="the run directory is damaged; run the suite again")
    cwd = str(b.get("cwd") or run.manifest.get("cwd") or ".")
    path = recipe.get("path")
    tmp: str | None = None
    recipe_arg: str
    candidate = Path(cwd, path) if isinstance(path, str) and not path.startswith("<") else None
    if candidate is not None and candidate.is_file() and \
            hashlib.sha256(candidate.read_bytes()).hexdigest() == recipe.get("sha256"):
        recipe_arg = str(path)
    else:  # the file changed or is gone (or it was the embedded default): use the recorded text
        fd, tmp = tempfile.mkstemp(prefix=f"hwbench-rerun-{recipe.get('name', 'recipe')}-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        recipe_arg = tmp
    env = dict(os.environ if environ is None else environ)
    missing = [name for name in b.get("secret_env") or [] if not env.get(name)]
    if missing:
        if tmp:
            os.unlink(tmp)
        raise HwbenchInputError(f"secret environment variable(s) {', '.join(missing)} are not set (their values "
                                "are never recorded)", file=where, field="rerun.secret_env",
                                fix=f"export {missing[0]}=... and run hwbench rerun again")
    env.update({str(k): str(v) for k, v in (b.get("env") or {}).items()})
    env[RERUN_OF_ENV] = run.run_id
    argv = [sys.executable, "-m", "pytest", "--recipe", recipe_arg,
            *option_args(dict(b.get("options") or {}), b.get("numprocesses"))]
    if save_baseline:
        argv.append("--hwbench-save-baseline")
    argv += list(extra_args or [])
    argv += [str(n) for n in b["node_ids"]]
    return argv, env, cwd, tmp


def find_rerun(report_dir: Path, of_run_id: str) -> Path | None:
    """The newest run directory under ``report_dir`` that records it is a rerun of ``of_run_id``."""
    import json

    found = []
    for manifest in report_dir.glob("*/run.json") if report_dir.is_dir() else []:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (data.get("rerun") or {}).get("rerun_of") == of_run_id:
            found.append(manifest.parent)
    return sorted(found)[-1] if found else None


def main(args: Any) -> int:
    """``hwbench rerun RUN [--dry-run] [--save-baseline] [--pytest-args '...']``."""
    from pytest_hwbench.report.run_data import load_run

    try:
        old = load_run(args.run, args.report_dir)  # resolved now: after the rerun, "latest" is the new run
        argv, env, cwd, tmp = plan(old.dir, args.report_dir, save_baseline=args.save_baseline,
                                   extra_args=shlex.split(args.pytest_args or ""))
    except HwbenchInputError as err:
        print(f"hwbench rerun: {err}", file=sys.stderr)
        return 2
    print("hwbench rerun:", shlex.join(argv), f"(in {cwd})")
    if args.dry_run:
        if tmp:
            os.unlink(tmp)
        return 0
    try:
        rc = subprocess.call(argv, cwd=cwd, env=env)
    finally:
        if tmp:
            os.unlink(tmp)
    report_dir = Path(cwd, (old.rerun.get("options") or {}).get("report_dir") or old.dir.parent)
    new = find_rerun(report_dir, old.run_id)
    if new is not None:
        print(f"hwbench rerun: {old.run_id} -> {new} (compare: hwbench compare {old.dir} {new})")
    return rc
