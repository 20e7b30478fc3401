"""Fetch a logged session back from MLflow as a run directory, for ``hwbench compare mlflow:host=... ...``.

Every session logged by ``report.mlflow_log`` is a parent run tagged ``host``, ``testbed`` and
``hwbench.run_id``, carrying ``results.json`` and ``run.json`` as artifacts. A side spelled
``mlflow:host=box7`` (or ``testbed=...``, ``run_id=...``, several joined by ``,``; ``n=2`` for the one before
the newest) is the newest such session: its two files are downloaded into a temporary directory, which
``run_data.load_run`` then reads like any run directory. So the fleet's machines compare with the same
command and the same statistics as two local runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import HwbenchInputError

PREFIX = "mlflow:"
FILTER_KEYS = {"host": "host", "testbed": "testbed", "run_id": "hwbench.run_id"}
FIX = "write mlflow:host=NAME, mlflow:testbed=NAME or mlflow:run_id=ID (join several with ','; add n=2 for " \
      "the session before the newest)"


def parse(ref: str) -> tuple[dict[str, str], int]:
    """``mlflow:host=a,testbed=b,n=2`` -> ({"host": "a", "testbed": "b"}, 2)."""
    body = ref[len(PREFIX):]
    filters: dict[str, str] = {}
    nth = 1
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise HwbenchInputError(f"{part!r} is not key=value", file=ref, fix=FIX)
        if key == "n":
            if not value.isdigit() or int(value) < 1:
                raise HwbenchInputError(f"n={value!r} is not a positive integer", file=ref, fix=FIX)
            nth = int(value)
        elif key in FILTER_KEYS:
            filters[key] = value
        else:
            raise HwbenchInputError(f"unknown filter {key!r}", file=ref, fix=FIX)
    if not filters:
        raise HwbenchInputError("no filter given", file=ref, fix=FIX)
    return filters, nth


def default_uri(report_dir: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(report_dir) / 'mlflow.db').resolve()}"


def fetch(ref: str, dest: Path, *, uri: str) -> Path:
    """Download the matching session's ``run.json`` and ``results.json`` into ``dest``; return ``dest``."""
    filters, nth = parse(ref)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:  # pragma: no cover - mlflow is a dependency
        raise HwbenchInputError("mlflow is not installed", file=ref, fix="pip install mlflow") from None
    client: Any = MlflowClient(tracking_uri=uri)
    query = " and ".join(f"tags.`{FILTER_KEYS[k]}` = '{v.replace(chr(39), '')}'" for k, v in sorted(filters.items()))
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string=query, order_by=["attributes.start_time DESC"],
                                  max_results=200) if experiments else []
    except Exception as err:
        raise HwbenchInputError(f"MLflow at {uri} could not be searched ({type(err).__name__}: {err})", file=ref,
                                fix="check --mlflow-uri / $MLFLOW_TRACKING_URI") from None
    sessions = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if len(sessions) < nth:
        raise HwbenchInputError(f"{len(sessions)} logged session(s) match {filters} in MLflow at {uri}", file=ref,
                                fix="check the filter against the runs' tags (host, testbed, hwbench.run_id)")
    run_id = sessions[nth - 1].info.run_id
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "results.json"):
        try:
            client.download_artifacts(run_id, name, str(dest))
        except Exception as err:
            raise HwbenchInputError(f"MLflow run {run_id} has no {name} artifact ({err})", file=ref,
                                    fix="the session was logged without artifacts; compare run directories") \
                from None
    return dest
