"""Log a finished benchmark session to MLflow: one parent run per session, one nested child run per test.

Why it looks like this:

* **MLflow is for trends, the files are the record.** Results are already written to ``reports/<run_id>/``
  before this runs; MLflow is where a team follows numbers across machines and upgrades. So this module
  never raises and never blocks a CI job for minutes: an unreachable server is probed first (3 s, and
  retries, as the recipe's ``mlflow:`` says), mlflow's own HTTP retries are switched off for the duration,
  and any failure becomes one warning that names the URI, what was not logged and where the files are
  (``hwbench mlflow upload`` logs them later).
* **One parent per session, one child per test.** The parent carries what identifies the session
  (recipe, testbed, git commit, overall verdict) so sessions can be compared; each child carries one test's
  params, ``<metric>.<stat>`` metrics and verdict tags, so a test's trend across sessions is one
  ``search_runs`` filter (``tags.test_id = '...'``) away.
* **Secrets never reach MLflow** (docs/architecture.md, Conventions): every string that becomes a key, value, run name
  or artifact is passed through the redactor first, even though callers are expected to have redacted
  already; a leak into a shared tracking server cannot be taken back.
* **Local default works without a server.** ``sqlite:///<abs path>`` URIs use mlflow's SQL store
  in-process. Artifacts of a new experiment then go next to the database (``<db dir>/mlartifacts``), not
  into ``./mlruns`` of whatever directory pytest was started from.

mlflow is imported lazily: importing it costs ~1.5 s, which sessions that do not log should not pay.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from pytest_hwbench.report.redact import Redactor, process_redactor

__all__ = ["MlflowOutcome", "log_session", "sanitize_key"]

# MLflow limits (mlflow/utils/validation.py); kept here so a request is never rejected for its size.
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_BYTES = 900_000  # server limit is 1e6 bytes of request body; leave room for JSON overhead
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

PROBE_TIMEOUT_S = 3.0
#: Child runs logged concurrently to an HTTP tracking server (each is 3 requests).
HTTP_PARALLEL_RUNS = 4
REDACTED = "***"
#: "***" is not a legal character sequence in an MLflow key, so a secret inside a key becomes this.
REDACTED_KEY = "REDACTED"

#: Verdicts ordered from worst to best; the session verdict is the worst one seen.
_VERDICT_RANK = ("ERROR", "FAIL", "INCONCLUSIVE", "WARN", "NO_BASELINE", "STALE", "SKIP", "PASS")

_log = logging.getLogger(__name__)


@dataclass
class MlflowOutcome:
    """What happened: ``ok`` is False when anything was not logged, and ``warning`` then says what.

    ``warning`` may also be set with ``ok`` True for a partial problem that lost no result (an artifact
    file that did not exist). ``child_run_ids`` follows the order of ``results``.
    """

    ok: bool
    parent_run_id: str | None = None
    child_run_ids: list[str] = field(default_factory=list)
    warning: str | None = None
    elapsed_s: float = 0.0
    #: Link to the parent run in the MLflow UI (tracking servers only), for the terminal summary.
    parent_run_url: str | None = None


# ------------------------------------------------------------------------------------------ redaction

class _Redactor(Redactor):
    """The one redactor (``report.redact``) plus the process-wide secrets, and MLflow-legal keys."""

    def __init__(self, secrets: frozenset[str] | set[str] | Sequence[str]) -> None:
        super().__init__(process_redactor().secrets)
        self.add(secrets)

    def key(self, value: str) -> str:
        return sanitize_key(self.text(value, REDACTED_KEY))


_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def sanitize_key(key: str) -> str:
    """Make ``key`` a legal MLflow param/metric/tag key on every platform.

    MLflow accepts alphanumerics, ``_ - . /`` and space (colon only off Windows, so we drop it), at most
    250 characters, and the key must be its own normalised path (no ``//``, no leading ``/``, no ``.``
    or ``..`` segment), because file-based stores use keys as file names. Other characters become ``_``.
    """
    key = _BAD_KEY_CHARS.sub("_", str(key))
    key = re.sub(r"/{2,}", "/", key).strip("/")
    segments = ["_" if seg in (".", "..") else seg for seg in key.split("/")]
    key = "/".join(segments)[:MAX_KEY_LENGTH].rstrip("/")
    return key or "_"


def _display_uri(uri: str) -> str:
    """The URI without user:password@, which must not appear in a warning or a log."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


# ------------------------------------------------------------------------------------- value helpers

def _to_ms(value: Any) -> int | None:
    """Epoch milliseconds from epoch seconds/ms or an ISO 8601 string; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        return int(value if value > 1e12 else value * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    return None


def _as_param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _worst_verdict(verdicts: Sequence[str]) -> str:
    if not verdicts:
        return "NONE"
    def rank(v: str) -> int:
        return _VERDICT_RANK.index(v) if v in _VERDICT_RANK else _VERDICT_RANK.index("PASS") - 1
    return min((str(v).upper() for v in verdicts), key=rank)


def _slo_status(slo: Any) -> str:
    """PASS / FAIL / NONE / UNKNOWN from a test's SLO list, whatever shape each entry has."""
    if not slo:
        return "NONE"
    states: list[bool | None] = []
    for entry in slo if isinstance(slo, list) else [slo]:
        state: bool | None = None
        if isinstance(entry, Mapping):
            for k in ("passed", "ok"):
                if isinstance(entry.get(k), bool):
                    state = entry[k]
                    break
            else:
                for k in ("status", "verdict", "result"):
                    if isinstance(entry.get(k), str):
                        state = entry[k].upper() in ("PASS", "PASSED", "OK")
                        break
        states.append(state)
    if any(s is False for s in states):
        return "FAIL"
    if all(s is True for s in states):
        return "PASS"
    return "UNKNOWN"


def _baseline_status(baseline: Any) -> str:
    if not baseline:
        return "NONE"
    if isinstance(baseline, Mapping):
        status = baseline.get("status") or baseline.get("verdict")
        return str(status).upper() if status else "UNKNOWN"
    return str(baseline).upper()


# ----------------------------------------------------------------------------------------- batching

class _Entities:
    """Params, tags and metrics of one run, keyed and redacted, ready to be cut into batches."""

    def __init__(self, redactor: _Redactor) -> None:
        self.redactor = redactor
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[str, float, int, int]] = []  # key, value, timestamp ms, step
        self._metric_keys: set[tuple[str, int]] = set()

    @staticmethod
    def _unique(key: str, taken: Mapping[str, Any] | set[str]) -> str:
        """Two raw keys can sanitise to one; MLflow rejects duplicates in a batch, so number the later."""
        if key not in taken:
            return key
        n = 2
        while f"{key[: MAX_KEY_LENGTH - 4]}_{n}" in taken:
            n += 1
        return f"{key[: MAX_KEY_LENGTH - 4]}_{n}"

    def param(self, key: str, value: Any) -> None:
        k = self._unique(self.redactor.key(key), self.params)
        self.params[k] = _truncate(self.redactor.text(_as_param_text(value)), MAX_PARAM_VALUE_LENGTH)

    def tag(self, key: str, value: Any) -> None:
        # Tags set later overwrite (last word wins), unlike params; mlflow.* keys are never renamed.
        k = key if key.startswith("mlflow.") else self.redactor.key(key)
        self.tags[k] = _truncate(self.redactor.text(_as_param_text(value)), MAX_TAG_VALUE_LENGTH)

    def metric(self, key: str, value: Any, timestamp_ms: int, step: int = 0) -> None:
        v = _finite(value)
        if v is None:
            return
        k = self.redactor.key(key)
        if (k, step) in self._metric_keys:
            return
        self._metric_keys.add((k, step))
        self.metrics.append((k, v, timestamp_ms, step))

    def batches(self) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
        """(metrics, params, tags) chunks within MLflow's per-request count and size limits."""
        from mlflow.entities import Metric, Param, RunTag

        params = list(self.params.items())
        tags = list(self.tags.items())
        metrics = list(self.metrics)
        while params or tags or metrics:
            size = 0
            p_chunk: list[Any] = []
            t_chunk: list[Any] = []
            m_chunk: list[Any] = []
            while params and len(p_chunk) < MAX_PARAMS_PER_BATCH:
                k, v = params[0]
                if p_chunk and size + len(k) + len(v) + 32 > MAX_BATCH_BYTES // 2:
                    break
                size += len(k) + len(v) + 32
                p_chunk.append(Param(k, v))
                params.pop(0)
            while tags and len(t_chunk) < MAX_TAGS_PER_BATCH:
                k, v = tags[0]
                if t_chunk and size + len(k) + len(v) + 32 > MAX_BATCH_BYTES:
                    break
                size += len(k) + len(v) + 32
                t_chunk.append(RunTag(k, v))
                tags.pop(0)
            room = MAX_ENTITIES_PER_BATCH - len(p_chunk) - len(t_chunk)
            while metrics and room > 0 and size + MAX_KEY_LENGTH + 96 <= MAX_BATCH_BYTES:
                k, value, ts, step = metrics.pop(0)
                size += len(k) + 96
                m_chunk.append(Metric(k, value, ts, step))
                room -= 1
            yield m_chunk, p_chunk, t_chunk


# ----------------------------------------------------------------------------------- server / client

def _probe(uri: str, experiment: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when something answers HTTP at ``uri``, else why not (for the warning).

    Any HTTP status counts as reachable (401/403 with credentials mlflow adds itself, 404 for a missing
    experiment): the probe only exists to fail in seconds where mlflow would hang on connects.
    """
    query = urllib.parse.urlencode({"experiment_name": experiment})
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?" + query
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, ssl.SSLError):
            return None  # TLS answered; certificate settings are mlflow's business (MLFLOW_TRACKING_*)
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        if isinstance(reason, socket.gaierror):
            return "host name could not be resolved"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"no answer within {timeout_s:g} s"
        return str(reason)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (OSError, ValueError) as err:
        return str(err) or type(err).__name__


@contextlib.contextmanager
def _mlflow_env(request_timeout_s: int) -> Iterator[None]:
    """Fail fast instead of mlflow's default 5 retries with backoff (minutes) for this call only.

    Values the user set explicitly are respected; everything is restored afterwards, because the lead
    process may use mlflow for other things. mlflow's chatty INFO logging (schema migrations on first
    use of a sqlite file), progress bars, "View run" lines and library warnings are silenced for the
    duration too: they are noise at the end of a test session.
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(request_timeout_s)),
        # else set_terminated prints two "View run" lines per run to stdout (and fetches the run again)
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    saved = {k: os.environ.get(k) for k in wanted}
    for k, v in wanted.items():
        os.environ.setdefault(k, v)
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        # mlflow's own deprecation warnings (SQLAlchemy, starlette) would land in the user's pytest
        # warnings summary, about code they cannot change
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def _sqlite_artifact_location(uri: str) -> str | None:
    """``<db dir>/mlartifacts`` as a file URI for a sqlite store (mlflow's default is ./mlruns of the cwd)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    db = uri[len(prefix):].split("?", 1)[0]
    if not db or db == ":memory:":
        return None
    return (Path(db).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client: Any, uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return str(client.create_experiment(name, artifact_location=_sqlite_artifact_location(uri)))
        except Exception:
            exp = client.get_experiment_by_name(name)  # created concurrently by another session
            if exp is None:
                raise
    if getattr(exp, "lifecycle_stage", "active") == "deleted":
        raise RuntimeError(f"experiment {name!r} is deleted in MLflow (restore it or choose another name)")
    return str(exp.experiment_id)


def _log_entities(client: Any, run_id: str, entities: _Entities) -> None:
    for metrics, params, tags in entities.batches():
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=True)


def _stage_artifact(path: Path, redactor: _Redactor, tmp: Path) -> tuple[Path | None, str | None]:
    """The path to upload (a redacted copy when a secret is inside), or None and why it is skipped."""
    if not redactor.secrets:
        return path, None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    leaking = []
    for f in files:
        try:
            if redactor.found_in(f.read_bytes()):
                leaking.append(f)
        except OSError:
            continue
    if not leaking:
        return path, None
    staged = tmp / path.name
    if path.is_file():
        shutil.copyfile(path, staged)
    else:
        shutil.copytree(path, staged)
    for f in leaking:
        target = staged / f.relative_to(path) if path.is_dir() else staged
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            target.unlink()  # binary with a secret inside: do not upload it at all
            if path.is_file():
                return None, f"{path.name} contains a secret and is not text (not uploaded)"
            continue
        target.write_text(redactor.text(text), encoding="utf-8")
    return staged, None


# -------------------------------------------------------------------------------------- run content

def _env_tags(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A few fingerprint fields as tags: which box (silicon lottery) and which driver/kernel/BIOS a point
    of a trend ran on, so an upgrade shows up next to the step it caused."""
    fp = manifest.get("fingerprint")
    if not isinstance(fp, Mapping):
        return {}
    gpu = cast("Mapping[str, Any]", fp.get("gpu") if isinstance(fp.get("gpu"), Mapping) else {})
    dmi = cast("Mapping[str, Any]", fp.get("dmi") if isinstance(fp.get("dmi"), Mapping) else {})
    osr = cast("Mapping[str, Any]", fp.get("os") if isinstance(fp.get("os"), Mapping) else {})
    return {
        "host": fp.get("hostname"),
        "env.kernel": fp.get("kernel"),
        "env.os": osr.get("pretty_name") or osr.get("name"),
        "env.gpu_driver": gpu.get("driver_version"),
        "env.cuda_driver": gpu.get("cuda_driver_version"),
        "env.bios_version": dmi.get("bios_version"),
    }


def _parent_entities(manifest: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                     redactor: _Redactor, now_ms: int) -> _Entities:
    recipe = manifest.get("recipe") or {}
    git = manifest.get("git") or {}
    verdicts = [str(r.get("verdict") or "NONE").upper() for r in results]
    overall = str(manifest.get("verdict") or _worst_verdict(verdicts)).upper()
    ent = _Entities(redactor)
    for key, value in (("recipe.name", recipe.get("name")), ("recipe.sha256", recipe.get("sha256")),
                       ("recipe.path", recipe.get("path")), ("testbed", manifest.get("testbed")),
                       ("git.commit", git.get("commit"))):
        if value is not None:
            ent.param(key, value)
    with contextlib.suppress(Exception):
        from pytest_hwbench import __version__

        ent.param("hwbench.version", __version__)
    tags: dict[str, Any] = {
        "testbed": manifest.get("testbed"),
        "git.commit": git.get("commit"),
        "git.dirty": git.get("dirty"),
        "git.branch": git.get("branch"),
        "hwbench.verdict": overall,
        "hwbench.run_id": manifest.get("run_id"),
        "recipe.name": recipe.get("name"),
        "mlflow.source.git.commit": git.get("commit"),
    }
    tags.update(_env_tags(manifest))
    for key, value in tags.items():
        if value is not None:
            ent.tag(key, value)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    ent.metric("tests.total", len(results), now_ms)
    for v, n in sorted(counts.items()):
        ent.metric(f"tests.{v.lower()}", n, now_ms)
    lines = [f"**{overall}**: {len(results)} tests", ""]
    lines += [f"- {v}: {n}" for v, n in sorted(counts.items())]
    ent.tag("mlflow.note.content", "\n".join(lines))
    return ent


def _child_entities(result: Mapping[str, Any], manifest: Mapping[str, Any], parent_id: str,
                    redactor: _Redactor, end_ms: int) -> _Entities:
    ent = _Entities(redactor)
    for key, value in (result.get("params") or {}).items():
        ent.param(str(key), value)
    git = manifest.get("git") or {}
    tags = {
        "mlflow.parentRunId": parent_id,
        "hwbench.verdict": str(result.get("verdict") or "NONE").upper(),
        "hwbench.slo": _slo_status(result.get("slo")),
        "hwbench.baseline": _baseline_status(result.get("baseline")),
        "hwbench.outcome": result.get("outcome"),
        "hwbench.invalid": "; ".join(result.get("invalid_reasons") or []) or None,
        "hwbench.run_id": manifest.get("run_id"),
        "testbed": manifest.get("testbed"),
        "test_id": result.get("test_id"),
        "git.commit": git.get("commit"),
        "mlflow.source.git.commit": git.get("commit"),
        "host": _env_tags(manifest).get("host"),
    }
    for key, value in tags.items():
        if value is not None:
            ent.tag(key, value)
    if result.get("bottleneck"):
        ent.tag("hwbench.bottleneck", result["bottleneck"].get("cause"))
        ent.tag("hwbench.bottleneck.detail", json.dumps(result["bottleneck"], sort_keys=True, default=str))
    if result.get("slo"):
        ent.tag("hwbench.slo.detail", json.dumps(result["slo"], sort_keys=True, default=str))
    if result.get("baseline"):
        ent.tag("hwbench.baseline.detail", json.dumps(result["baseline"], sort_keys=True, default=str))
    ent.metric("duration_s", result.get("duration_s"), end_ms)
    ent.metric("trials", result.get("trials"), end_ms)
    for metric, data in (result.get("metrics") or {}).items():
        if not isinstance(data, Mapping):
            continue
        summary = data.get("summary") or {}
        for stat, value in summary.items():
            if stat == "ci" and isinstance(value, Mapping):
                for ci_stat, bounds in value.items():
                    if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
                        ent.metric(f"{metric}.{ci_stat}.ci_low", bounds[0], end_ms)
                        ent.metric(f"{metric}.{ci_stat}.ci_high", bounds[1], end_ms)
            elif stat != "confidence":
                ent.metric(f"{metric}.{stat}", value, end_ms)
        # per-trial values (each trial's median) as steps: the evidence the baseline verdict resamples
        for step, value in enumerate(data.get("trial_values") or []):
            ent.metric(f"{metric}.trial", value, end_ms, step=step)
    return ent


def _log_child(client: Any, exp_id: str, parent_id: str, manifest: Mapping[str, Any], redactor: _Redactor,
               result: Mapping[str, Any]) -> str:
    """Create, fill and finish one test's child run; returns its run id."""
    now_ms = int(time.time() * 1000)
    duration_ms = int((_finite(result.get("duration_s")) or 0.0) * 1000)
    start = _to_ms(result.get("started_at"))
    # Without a recorded start, end the run now and start it duration earlier, so MLflow shows the
    # test's real duration rather than the time it took to log it.
    end = start + duration_ms if start is not None else now_ms
    start = start if start is not None else now_ms - duration_ms
    ent = _child_entities(result, manifest, parent_id, redactor, end)
    name = redactor.text(str(result.get("name") or result.get("test_id") or "test"))
    child = client.create_run(exp_id, start_time=start, tags=ent.tags, run_name=_truncate(name, 250))
    ent.tags = {}  # already set at creation
    _log_entities(client, child.info.run_id, ent)
    client.set_terminated(child.info.run_id, "FINISHED", end_time=end)
    return str(child.info.run_id)


# --------------------------------------------------------------------------------------- public API

def log_session(tracking_uri: str, experiment: str, run_manifest: dict, results: list[dict],
                artifacts: list[Path], secret_values: frozenset[str] = frozenset(), *,
                report_dir: Path | None = None, request_timeout_s: int = 10,
                probe_timeout_s: float = PROBE_TIMEOUT_S, probe_retries: int = 0) -> MlflowOutcome:
    """Log one session (parent run) and its tests (child runs) to MLflow; never raises.

    ``run_manifest`` needs run_id, testbed, recipe {name, path, sha256}, git {commit, dirty[, branch]},
    started_at (ISO 8601 or epoch seconds); an optional ``verdict`` overrides the session verdict, which
    is otherwise the worst test verdict. Each result's ``slo`` entries are read as dicts with a bool
    ``passed`` (or ``ok``, or a ``status``/``verdict`` string) and ``baseline`` as ``{status: ...}``.
    ``report_dir`` only improves the warning ("files are in ..."); by default it is the folder of the
    first artifact. ``request_timeout_s`` bounds each HTTP request to a tracking server; the server is probed
    first for ``probe_timeout_s`` seconds, ``probe_retries`` more times with backoff (recipe ``mlflow:``).
    """
    t0 = time.monotonic()
    with contextlib.suppress(ValueError):  # a password inside the URI is a secret too
        password = urllib.parse.urlsplit(tracking_uri).password
        if password:
            secret_values = frozenset(secret_values) | {password}
    redactor = _Redactor(secret_values)
    run_id = redactor.text(str(run_manifest.get("run_id") or "?"))
    shown_uri = redactor.text(_display_uri(tracking_uri))
    n = len(results)
    if report_dir is None and artifacts:
        report_dir = Path(artifacts[0]).parent
    where = f"; files are in {report_dir}/" if report_dir else ""
    experiment = redactor.text(experiment or "hwbench")
    remote = tracking_uri.startswith(("http://", "https://"))

    exp_id: str | None = None

    def outcome(ok: bool, warning: str | None, parent: str | None = None,
                children: list[str] | None = None) -> MlflowOutcome:
        if warning:
            warning = redactor.text(warning)
            _log.debug("%s", warning)  # the caller shows it once; logging it too would print it twice
        url = None
        if remote and parent and exp_id is not None:
            url = f"{shown_uri.rstrip('/')}/#/experiments/{exp_id}/runs/{parent}"
        return MlflowOutcome(ok=ok, parent_run_id=parent, child_run_ids=children or [], warning=warning,
                             elapsed_s=round(time.monotonic() - t0, 3), parent_run_url=url)

    if remote:
        why = _probe(tracking_uri, experiment, probe_timeout_s)
        for attempt in range(max(0, probe_retries)):  # a cold or busy server: wait, then ask again
            if why is None:
                break
            time.sleep(min(2.0 ** attempt, 10.0))
            why = _probe(tracking_uri, experiment, probe_timeout_s)
        if why is not None:
            return outcome(False, f"MLflow at {shown_uri} unreachable ({why}): run {run_id} with {n} test "
                                  f"results was not logged{where}")

    parent_id: str | None = None
    children: list[str] = []
    notes: list[str] = []
    try:
        # imported before _mlflow_env: mlflow resets its logger level when first imported
        from mlflow.tracking import MlflowClient
    except ImportError:
        return outcome(False, f"mlflow not installed: run {run_id} with {n} test results was not "
                              f"logged to {shown_uri}{where}")
    except Exception as err:
        return outcome(False, f"mlflow failed to import ({err}): run {run_id} with {n} test results was not "
                              f"logged to {shown_uri}{where}")
    try:
        with _mlflow_env(request_timeout_s):
            client = MlflowClient(tracking_uri=tracking_uri)
            exp_id = _experiment_id(client, tracking_uri, experiment)
            now_ms = int(time.time() * 1000)
            start_ms = _to_ms(run_manifest.get("started_at")) or now_ms
            parent_ent = _parent_entities(run_manifest, results, redactor, now_ms)
            parent = client.create_run(exp_id, start_time=start_ms, tags=parent_ent.tags, run_name=run_id)
            parent_id = parent.info.run_id
            parent_ent.tags = {}  # already set at creation
            _log_entities(client, parent_id, parent_ent)

            log_child = functools.partial(_log_child, client, exp_id, parent_id, run_manifest, redactor)
            if remote and len(results) > 1:
                # latency-bound over HTTP: a few requests in flight cut a 100-test session several-fold
                with concurrent.futures.ThreadPoolExecutor(max_workers=HTTP_PARALLEL_RUNS) as pool:
                    futures = [pool.submit(log_child, r) for r in results]
                    try:
                        for fut in futures:
                            children.append(fut.result())
                    except BaseException:
                        for fut in futures:
                            fut.cancel()
                        raise
            else:  # SQLite serialises writers anyway; threads would only add "database is locked"
                for result in results:
                    children.append(log_child(result))

            with tempfile.TemporaryDirectory(prefix="hwbench-mlflow-") as tmp:
                for path in map(Path, artifacts):
                    if not path.exists():
                        notes.append(f"artifact {path} does not exist (not uploaded)")
                        continue
                    staged, why = _stage_artifact(path, redactor, Path(tmp))
                    if staged is None:
                        notes.append(why or f"{path} not uploaded")
                    elif staged.is_dir():
                        client.log_artifacts(parent_id, str(staged), artifact_path=staged.name)
                    else:
                        client.log_artifact(parent_id, str(staged))
            client.set_terminated(parent_id, "FINISHED")
    except Exception as err:
        detail = _truncate(" ".join(str(err).split()) or type(err).__name__, 300)
        if parent_id is not None:
            with contextlib.suppress(Exception), _mlflow_env(request_timeout_s):
                client.set_terminated(parent_id, "FAILED")
            what = (f"run {run_id} only partly logged (parent {parent_id}, {len(children)} of {n} "
                    f"test results)")
        else:
            what = f"run {run_id} with {n} test results was not logged"
        return outcome(False, f"MLflow at {shown_uri} failed ({type(err).__name__}: {detail}): {what}{where}",
                       parent_id, children)
    return outcome(True, "; ".join(notes) if notes else None, parent_id, children)
