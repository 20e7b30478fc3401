"""The run directory ``reports/<run-id>/``: manifest, results, raw samples. Only the controller writes.

Layout (README "Reports"):
- ``run.json``      run manifest: recipe (text + sha256), command line, fingerprint, testbed, git, status
- ``results.jsonl`` one line per finished test, appended as tests finish, so a killed run keeps its results
- ``results.json``  all results, written atomically once, at session end (``complete`` false when interrupted)
- ``samples.bin``   raw samples of every test, appended as little-endian float64, with ``samples.jsonl``
                    (one line per test and metric: offset and count); read them with :func:`read_samples`

Why one samples file per run: a compressed ``.npz`` per test cost ~250 µs and one file each (issue #14).

Why writes never raise: a full disk or an unusable ``--hwbench-report-dir`` must not lose the run — the tests
keep running and the verdicts still print. The first storage fault is kept as one clear message
(:attr:`RunWriter.error`), later writes are skipped, and files written before stay intact (atomic writes).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.atomic import write_json_atomic, write_text_atomic
from pytest_hwbench.report.redact import redact, redact_encoded
from pytest_hwbench.report.terminal import Digest, digest

T = TypeVar("T")

SCHEMA_VERSION = 1


def new_run_id() -> str:
    """Sortable, unique run id: UTC timestamp, then 6 hex digits — the millisecond (3 digits, so two runs
    started in the same second still sort by start time: ``latest`` depends on it) and 3 random ones."""
    now = time.time()
    millis = min(int((now % 1.0) * 1000), 999)
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{millis:03x}{secrets.token_hex(2)[:3]}"


def file_slug(test_id: str, limit: int = 120) -> str:
    """A filesystem-safe, unique name for a test id (long ids keep a hash suffix so they stay unique)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", test_id).strip("_")
    if len(slug) > limit:
        slug = slug[: limit - 13] + "-" + hashlib.sha256(test_id.encode()).hexdigest()[:12]
    return slug


class RunWriter:
    """Writes one run's files. Created lazily, on the first result, so a session in which no test used
    hwbench leaves nothing behind. No method raises for a storage fault (see the module docstring)."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.dir = root / run_id
        self.run_id = run_id
        self.error: str | None = None
        self.skipped: list[str] = []
        self._jsonl: Any = None
        self._samples: Any = None
        self._index: Any = None
        self._offset = 0
        self._guard("the run directory", self._open)

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.dir / "results.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def _guard(self, what: str, action: Callable[[], T]) -> T | None:
        """Run one write; on a storage fault remember the first error, skip what follows, return None."""
        if self.error is not None:
            self.skipped.append(what)
            return None
        try:
            return action()
        except (OSError, ValueError) as err:  # ValueError: a write to a file closed after a fault
            reason = getattr(err, "strerror", None) or str(err)
            self.error = (f"pytest-hwbench: could not write {what} in {self.dir}: {reason}; later report files "
                          "were not written either (fix: free disk space, or pass a writable "
                          "--hwbench-report-dir)")
            return None

    @property
    def ok(self) -> bool:
        return self.error is None

    def write_manifest(self, manifest: dict[str, Any]) -> Path | None:
        return self._guard("run.json", lambda: write_json_atomic(self.dir / "run.json", manifest))

    def append_result(self, result: dict[str, Any], line: str | None = None) -> None:
        """Append one test's result as a JSON line and flush, so it survives a killed process. ``line``:
        the result already encoded (``result_line``), so it is not encoded twice."""
        def write() -> None:
            self._jsonl.write((line or result_line(result)) + "\n")
            self._jsonl.flush()

        self._guard("results.jsonl", write)

    def write_samples(self, test_id: str, samples: Mapping[str, bytes | np.ndarray]) -> Path | None:
        """Append each metric's raw samples to ``samples.bin`` and index them in ``samples.jsonl``. A metric's
        samples are an array, or already the little-endian float64 bytes the file holds (a measuring test's
        own samples: they need no numpy)."""
        if not samples:
            return None

        def write() -> Path:
            if self._samples is None:
                self._samples = open(self.dir / "samples.bin", "ab")  # noqa: SIM115 (kept open)
                self._index = open(self.dir / "samples.jsonl", "a", encoding="utf-8")  # noqa: SIM115
                self._offset = self._samples.tell()
            lines = []
            for metric, values in samples.items():
                data = values if isinstance(values, bytes) else _f8_bytes(values)
                self._samples.write(data)
                lines.append(json.dumps({"test_id": test_id, "metric": metric, "offset": self._offset,
                                         "count": len(data) // 8}) + "\n")
                self._offset += len(data)
            self._index.write("".join(lines))  # flushed at close: results.jsonl is what a killed run keeps
            return self.dir / "samples.bin"

        return self._guard("samples.bin", write)

    def write_results(self, results: dict[str, Any], encoded_tests: list[str] | None = None) -> Path | None:
        return self._guard("results.json", lambda: write_text_atomic(
            self.dir / "results.json", results_json_text(results, encoded_tests)))

    def close(self) -> None:
        for fh in (self._jsonl, self._samples, self._index):
            if fh is not None:
                try:
                    fh.close()
                except OSError as err:  # the final flush of a full disk
                    self.error = self.error or f"pytest-hwbench: could not finish writing {self.dir}: {err}"


def _f8_bytes(values: np.ndarray) -> bytes:
    import numpy as np

    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def result_line(result: dict[str, Any]) -> str:
    """One result as ``results.jsonl`` holds it (sorted keys, one line)."""
    return json.dumps(result, sort_keys=True, allow_nan=False)


def redact_payload(payload: dict[str, Any], secrets: Any = ()) -> tuple[dict[str, Any], str | None]:
    """A result with secrets masked, and its ``results.jsonl`` line (None when it cannot be encoded: the
    writer then reports that). Encoding first lets one scan of the text stand for the walk over every node
    of the result when there is nothing to mask, the usual case (~0.2 ms per test, issue #14)."""
    try:
        line = result_line(payload)
    except ValueError:
        return redact(payload, secrets), None
    masked, changed = redact_encoded(payload, line, secrets)
    return (masked, result_line(masked)) if changed else (payload, line)


class EncodedResults(Mapping[str, dict[str, Any]]):
    """The run's results, ``{test_id: result}``, each kept as its encoded ``results.jsonl`` line.

    Why not the dicts: a result is some 30 containers (metrics, summaries, intervals), so 1000 kept results
    are 30,000 objects that survive every collection, push the collector into an extra full collection
    during the run (~100 ms in a pytest process) and make each later one slower; a ``str`` is not tracked
    by the collector at all. Reading decodes the line (a C ``json.loads``, ~15 µs); the lines themselves
    become ``results.json`` without being encoded again. A result that cannot be encoded (a NaN the writer
    will report) is kept as it is.
    """

    def __init__(self) -> None:
        self._lines: dict[str, str | dict[str, Any]] = {}
        self._digests: dict[str, Digest] = {}

    def put(self, result: dict[str, Any], line: str | None = None) -> None:
        """Keep ``result`` (``line``: its encoding when already made, as ``redact_payload`` returns it) and
        the terminal's digest of it."""
        test_id = result["test_id"]
        self._digests[test_id] = digest(result)
        if line is None:
            try:
                line = result_line(result)
            except ValueError:
                self._lines[test_id] = result
                return
        self._lines[test_id] = line

    def digests(self) -> list[Digest]:
        """The terminal's view of every result, in run order, without decoding any."""
        return list(self._digests.values())

    def sweep_points(self) -> list[dict[str, Any]]:
        """The results that may belong to a sweep (measured at a load parameter), decoded."""
        return [self[test_id] for test_id, d in self._digests.items() if d.sweep_point]

    def __getitem__(self, test_id: str) -> dict[str, Any]:
        value = self._lines[test_id]
        return json.loads(value) if isinstance(value, str) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def encoded(self) -> list[str]:
        """Every result as its JSON text (in run order), for ``results.json``."""
        return [v if isinstance(v, str) else result_line(v) for v in self._lines.values()]


def results_json_text(doc: dict[str, Any], encoded_tests: list[str] | None = None) -> str:
    """``results.json``'s text: sorted keys, one test per line.

    Why not ``indent=2`` like the other files: with an indent ``json`` uses its pure-Python encoder, about
    0.45 s per 1000 tests (issue #14); without one its C encoder takes a few milliseconds. One test per line
    keeps the file readable with ``grep`` and diffable test by test. ``encoded_tests``: the tests already
    encoded (``EncodedResults.encoded``), used instead of ``doc["tests"]``."""
    head = {k: v for k, v in doc.items() if k != "tests"}
    tests = doc.get("tests")
    if encoded_tests is None:
        if not isinstance(tests, list):
            return json.dumps(doc, sort_keys=True, allow_nan=False) + "\n"
        encoded_tests = [result_line(t) for t in tests]
    parts = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True, allow_nan=False)}" for k, v in sorted(head.items())]
    body = ",\n".join(encoded_tests)
    parts.append('"tests": [' + ("\n" + body + "\n" if encoded_tests else "") + "]")
    return "{" + ",\n".join(parts) + "}\n"


def read_samples(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Raw samples of a run directory: ``{test_id: {metric: float64 array}}`` (empty when there are none)."""
    import numpy as np
    run = Path(run_dir)
    index = run / "samples.jsonl"
    if not index.exists():
        return {}
    blob = np.fromfile(run / "samples.bin", dtype="<f8")
    out: dict[str, dict[str, np.ndarray]] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        start = int(entry["offset"]) // 8
        out.setdefault(entry["test_id"], {})[entry["metric"]] = blob[start:start + int(entry["count"])]
    return out
