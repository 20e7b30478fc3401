"""The run directory ``reports/<run-id>/``: manifest, results, raw samples. Only the controller writes.

Layout (README "Reports"):
- ``run.json``      run manifest: recipe (text + sha256), command line, fingerprint, testbed, git, status
- ``results.jsonl`` one line per finished test, appended as tests finish, so a killed run keeps its results
- ``results.json``  all results, rewritten atomically at session end (``complete`` false when interrupted)
- ``samples/<test>.npz`` raw samples per test (numpy arrays named by metric)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from pytest_hwbench.atomic import write_bytes_atomic, write_json_atomic

SCHEMA_VERSION = 1


def new_run_id() -> str:
    """Sortable, unique run id: UTC timestamp plus 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def file_slug(test_id: str, limit: int = 120) -> str:
    """A filesystem-safe, unique name for a test id (long ids keep a hash suffix so they stay unique)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", test_id).strip("_")
    if len(slug) > limit:
        slug = slug[: limit - 13] + "-" + hashlib.sha256(test_id.encode()).hexdigest()[:12]
    return slug


class RunWriter:
    """Writes one run's files. Created lazily, on the first result, so a session in which no test used
    hwbench leaves nothing behind."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.dir = root / run_id
        self.run_id = run_id
        (self.dir / "samples").mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.dir / "results.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        return write_json_atomic(self.dir / "run.json", manifest)

    def append_result(self, result: dict[str, Any]) -> None:
        """Append one test's result as a JSON line and flush, so it survives a killed process."""
        self._jsonl.write(json.dumps(result, sort_keys=True, allow_nan=False) + "\n")
        self._jsonl.flush()

    def write_samples(self, test_id: str, samples: dict[str, np.ndarray]) -> Path | None:
        if not samples:
            return None
        buf = io.BytesIO()
        np.savez_compressed(buf, **samples)
        return write_bytes_atomic(self.dir / "samples" / f"{file_slug(test_id)}.npz", buf.getvalue(),
                                  durable=False)

    def write_results(self, results: dict[str, Any]) -> Path:
        return write_json_atomic(self.dir / "results.json", results)

    def close(self) -> None:
        self._jsonl.close()
