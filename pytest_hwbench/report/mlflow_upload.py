"""``hwbench mlflow upload RUN_DIR...``: log runs that could not be logged when they ran.

A session whose tracking server was down (or too slow for the probe) keeps everything in its run directory
and says so in one warning. This command logs such a directory later exactly as the session would have (same
parent run, child runs and artifacts, through ``log_session``), so the team server has no gaps.

It is idempotent: a run whose ``hwbench.run_id`` is already on the server is skipped (``--force`` logs it
again), so ``hwbench mlflow upload reports/`` after an outage uploads only what is missing. The files in a
run directory were redacted when written, so nothing is redacted again here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.report.fleet_data import _read_json, find_run_dirs


@dataclass(frozen=True)
class UploadResult:
    run_dir: Path
    status: str  # "uploaded" | "present" | "failed"
    message: str


def _already_logged(uri: str, experiment: str, run_id: str) -> str | None:
    """The parent run id of ``run_id`` on the server, or None."""
    from mlflow.tracking import MlflowClient

    from pytest_hwbench.report.mlflow_log import _mlflow_env

    with _mlflow_env(30):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        hits = client.search_runs([exp.experiment_id], max_results=5,
                                  filter_string=f"tags.`hwbench.run_id` = '{run_id}' and metrics.`tests.total` >= 0")
        for run in hits:
            if "mlflow.parentRunId" not in run.data.tags and run.info.status == "FINISHED":
                return str(run.info.run_id)
    return None


def upload_run_dir(run_dir: Path, uri: str, experiment: str, *, force: bool = False, probe_timeout_s: float = 10.0,
                   probe_retries: int = 2) -> UploadResult:
    from pytest_hwbench.report.mlflow_log import log_session

    manifest = _read_json(run_dir / "run.json")
    if not isinstance(manifest, dict):
        raise HwbenchInputError(f"{run_dir / 'run.json'}: expected a JSON object")
    results_path = run_dir / "results.json"
    if results_path.is_file():
        doc = _read_json(results_path)
        tests = doc.get("tests", []) if isinstance(doc, dict) else []
    else:
        from pytest_hwbench.report.fleet_data import load_run_dir

        load_run_dir(run_dir)  # validates the jsonl; the raw dicts are what log_session reads
        import json

        tests = []
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                tests.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    run_id = str(manifest.get("run_id") or run_dir.name)
    if not force:
        try:
            present = _already_logged(uri, experiment, run_id)
        except Exception as err:  # the log_session below reports an unreachable server clearly
            present = None
            _ = err
        if present:
            return UploadResult(run_dir, "present", f"{run_dir}: run {run_id} is already logged (parent run "
                                                    f"{present}); --force logs it again")
    artifacts = [p for p in (results_path, run_dir / "run.json") if p.is_file()]
    outcome = log_session(uri, experiment, manifest, tests, artifacts, report_dir=run_dir,
                          probe_timeout_s=probe_timeout_s, probe_retries=probe_retries)
    if outcome.ok:
        where = outcome.parent_run_url or outcome.parent_run_id
        extra = f" ({outcome.warning})" if outcome.warning else ""
        return UploadResult(run_dir, "uploaded", f"{run_dir}: run {run_id} logged with {len(tests)} tests: "
                                                 f"{where}{extra}")
    return UploadResult(run_dir, "failed", outcome.warning or f"{run_dir}: not logged")


def upload(paths: Sequence[str], uri: str, experiment: str, *, force: bool = False, probe_timeout_s: float = 10.0,
           probe_retries: int = 2, echo: Callable[[str], None] = print) -> int:
    """Upload every run directory under ``paths``; exit status 1 when any failed."""
    dirs = find_run_dirs(paths)
    if not dirs:
        raise HwbenchInputError(f"no run directory (with run.json) in {', '.join(paths)}")
    failed = 0
    for d in dirs:
        result = upload_run_dir(d, uri, experiment, force=force, probe_timeout_s=probe_timeout_s,
                                probe_retries=probe_retries)
        echo(result.message)
        failed += result.status == "failed"
    return 1 if failed else 0
