"""The workloads' recipe settings as typed records: each declared once (name, default, spec) and built once.

Why here, in the recipe stage: a benchmark must not re-read ``hwbench.settings["requests"]`` with its own
``int(...)`` and its own default — a typo would fall back to that default silently, and a bad value would
surface minutes into a run. The loader checks these sections with everything else, before the first test,
and the benchmarks receive :class:`WorkloadSettings` (``hwbench.workloads``): attributes, not string keys.

Where each workload's settings live in a recipe:

* ``settings.llm`` — :class:`LLMSettings` (``benchmarks/test_llm_serving.py``);
* ``settings.redis`` / ``settings.postgres`` — :class:`RedisSettings` / :class:`PostgresSettings`; a key
  they declare may also be written at the top of ``settings`` and then applies to both (a section wins);
* top-level ``settings.s3_*`` and ``settings.vector_*`` / ``settings.qdrant_*`` — :class:`S3Settings` and
  :class:`VectorSettings`; those prefixes are reserved, so ``s3_requets`` is an error, not a free key;
* ``settings.allow_existing_data`` — shared by every data-service workload (a section may override it).

Every other top-level key stays free for the user's own benchmarks (``hwbench.settings``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.specs import (
    INVALID,
    Bool,
    Declared,
    Enum,
    Float,
    Int,
    Issue,
    RecipeError,
    Record,
    Spec,
    Str,
    join,
    setting,
    unknown_key,
)

# ------------------------------------------------------------------------------ mixes and sizes (one parser)

_MIX_SPLIT = re.compile(r"\s*[:,/]\s*")


def parse_mix(mix: str | Mapping[str, Any], allowed: Sequence[str], *, field: str = "settings.mix") \
        -> dict[str, float]:
    """Operation mix → normalised weights, e.g. ``"get:set=90:10"`` → ``{"get": 0.9, "set": 0.1}``.

    Accepted forms: ``"get:set=90:10"`` (names, then weights), ``"get=90,set=10"``, a single name
    (``"set"``: only that operation), or a mapping ``{get: 90, set: 10}``. Weights are relative.
    """
    fix = f"write e.g. {':'.join(allowed[:2])}={':'.join(['50'] * min(2, len(allowed)))} " \
          f"(operations: {', '.join(allowed)})"
    pairs: list[tuple[str, Any]]
    if isinstance(mix, Mapping):
        pairs = list(mix.items())
    elif isinstance(mix, str) and mix.strip():
        text = mix.strip()
        if "=" in text and text.count("=") == 1 and "," not in text:
            names, weights_text = text.split("=")
            n, w = _MIX_SPLIT.split(names.strip()), _MIX_SPLIT.split(weights_text.strip())
            if len(n) != len(w):
                raise HwbenchInputError(f"{mix!r}: {len(n)} operations but {len(w)} weights", field=field,
                                        fix=fix)
            pairs = list(zip(n, w, strict=True))
        elif "=" in text:
            pairs = []
            for part in text.split(","):
                name, _, weight = part.partition("=")
                pairs.append((name.strip(), weight.strip()))
        else:
            pairs = [(name, 1) for name in _MIX_SPLIT.split(text)]
    else:
        raise HwbenchInputError(f"mix must be a string or a mapping, got {mix!r}", field=field, fix=fix)
    weights: dict[str, float] = {}
    for name, weight in pairs:
        name = str(name).strip().lower()
        if name not in allowed:
            raise HwbenchInputError(f"unknown operation {name!r} in mix {mix!r}", field=field, fix=fix)
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise HwbenchInputError(f"weight {weight!r} of {name!r} is not a number", field=field,
                                    fix=fix) from None
        if not math.isfinite(value) or value < 0:
            raise HwbenchInputError(f"weight of {name!r} must be >= 0, got {weight!r}", field=field, fix=fix)
        weights[name] = weights.get(name, 0.0) + value
    total = sum(weights.values())
    if total <= 0:
        raise HwbenchInputError(f"mix {mix!r} has no operation with a positive weight", field=field, fix=fix)
    return {name: w / total for name, w in weights.items() if w > 0}


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def parse_size(value: Any, *, field: str, minimum: int = 0) -> int:
    """A byte size from a recipe: an integer, or a string such as ``"4kb"``, ``"1mb"``, ``"512"``.

    Units are binary (``1kb`` = 1024 bytes), as in redis.conf, so a value written like the server's own
    limit compares with it exactly.
    """
    fix = "write a byte count such as 64, 4kb or 1mb"
    if isinstance(value, bool):
        raise HwbenchInputError(f"must be a size, got {value!r}", field=field, fix=fix)
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = (m.group(2) or "").lower()[:1]
        size = int(float(m.group(1)) * _SIZE_UNITS["" if unit == "b" else unit])
    else:
        raise HwbenchInputError(f"must be a size, got {value!r}", field=field, fix=fix)
    if size < minimum:
        raise HwbenchInputError(f"must be >= {minimum}, got {value!r}", field=field, fix=fix)
    return size


@dataclass(frozen=True)
class Mix(Spec):
    """An operation mix (:func:`parse_mix`); the cleaned value is the normalised weights."""

    operations: tuple[str, ...]

    def describe(self) -> str:
        return "an operation mix"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        try:
            return parse_mix(value, self.operations, field=path)
        except HwbenchInputError as err:
            issues.append(Issue(path or None, err.problem, err.fix))
            return INVALID


@dataclass(frozen=True)
class Size(Spec):
    """A byte size (:func:`parse_size`): ``64``, ``"4kb"``, ``"1mb"``; ``maximum`` names what limits it."""

    minimum: int = 0
    maximum: int | None = None
    limit: str = ""

    def describe(self) -> str:
        return "a byte size"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        try:
            size = parse_size(value, field=path, minimum=self.minimum)
        except HwbenchInputError as err:
            issues.append(Issue(path or None, err.problem, err.fix))
            return INVALID
        if self.maximum is not None and size > self.maximum:
            issues.append(Issue(path or None, f"{size} is over {self.limit or f'the maximum {self.maximum}'}",
                                f"use at most {self.maximum}"))
            return INVALID
        return size


@dataclass(frozen=True)
class NumberMap(Spec):
    """A mapping of names (from ``names()``, looked up when checked) to numbers >= 0."""

    names: Callable[[], Sequence[str]]
    what: str

    def describe(self) -> str:
        return self.what

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        return Record(dict.fromkeys(self.names(), Float(ge=0)), what=self.what).check(value, path, issues)


def _request_slo_metrics() -> Sequence[str]:
    from pytest_hwbench.workloads.llm_metrics import REQUEST_SLO_METRICS

    return REQUEST_SLO_METRICS


def _self_check_limits() -> Sequence[str]:
    from pytest_hwbench.workloads.engine import SelfCheckLimits

    return tuple(f.name for f in dataclasses.fields(SelfCheckLimits))


_COUNT = 1_000_000_000  # bounds that keep a typo from hanging a run for days
_SECONDS = 1e7
_TOKENS = 10_000_000


def _count(minimum: int = 1) -> Int:
    return Int(min=minimum, max=_COUNT)


def _seconds(*, zero: bool = False) -> Float:
    return Float(ge=0, lt=_SECONDS) if zero else Float(gt=0, lt=_SECONDS)


# ------------------------------------------------------------------------------------------------- the LLM

@dataclass(frozen=True)
class LLMSettings:
    """Benchmark sizes and client options, from the recipe's ``settings.llm`` mapping.

    Defaults are small on purpose: the shipped suite must finish in seconds on the reference server; a
    recipe for a real engine raises them. Field names are the recipe keys; empty values (``${VAR:-}``)
    mean the default.
    """

    model: str | None = setting(None, Str(nonempty=True))
    """Model name to request; default: the endpoint's (recipe service setting), else the server's first."""
    protocol: Literal["openai", "ollama"] | None = setting(None, Enum(("openai", "ollama")))
    """Default: ``ollama`` for an ``ollama`` service (native API, server timings), else ``openai``."""
    api: Literal["chat", "completions"] = setting("completions", Enum(("chat", "completions")))
    """``completions`` by default: it works on base and instruct models alike (no chat template in the
    way) and the server sees exactly the prompt length asked for. Ollama: completions = /api/generate."""
    prompt_tokens: int = setting(128, Int(min=1, max=_TOKENS))
    output_tokens: int = setting(32, Int(min=1, max=_TOKENS))
    num_prompts: int = setting(32, _count())
    """Distinct prompts of a duration-bound run (a request-bound run gets one fresh prompt per request)."""
    prompt_dataset: str | None = setting(None, Str(nonempty=True))
    """A JSONL file of prompts (``prompts.load_prompts_jsonl``) instead of synthetic ones."""
    requests: int = setting(8, _count())
    """Measured requests per trial of the low-load latency test."""
    warmup_requests: int = setting(1, _count(0))
    """Warm-up requests per user (closed loop) or in total (open loop) at the start of every trial."""
    long_prompt_tokens: int = setting(1024, Int(min=1, max=_TOKENS))
    long_output_tokens: int = setting(4, Int(min=1, max=_TOKENS))
    long_requests: int = setting(4, _count())
    requests_per_user: int = setting(4, _count())
    """Throughput sweep: measured requests per user at each concurrency."""
    sweep_duration_s: float | None = setting(None, _seconds())
    """Throughput sweep: measure for this long instead of a request count."""
    ramp_up_s: float = setting(0.0, _seconds(zero=True))
    goodput_duration_s: float = setting(1.0, _seconds())
    """Goodput: about ``rate x goodput_duration_s`` requests per trial (at least ``goodput_min_requests``)."""
    goodput_min_requests: int = setting(8, _count())
    arrival: Literal["poisson", "constant", "gamma"] = setting("poisson", Enum(("poisson", "constant", "gamma")))
    burstiness: float = setting(1.0, Float(gt=0, lt=1e6))
    max_concurrency: int | None = setting(None, _count())
    goodput: dict[str, float] = setting({}, NumberMap(_request_slo_metrics,
                                                      "a mapping such as {ttft_ms: 500, tpot_ms: 50}"))
    """Per-request SLOs for goodput (``{ttft_ms: 500, tpot_ms: 50}``); default: from the run's SLOs."""
    ignore_eos: bool = setting(False, Bool())
    """Ask the server to generate exactly ``max_tokens`` (vLLM, llama.cpp, the reference server)."""
    temperature: float = setting(0.0, Float(ge=0, lt=1e3))
    timeout_s: float = setting(120.0, _seconds())
    drain_timeout_s: float = setting(60.0, _seconds(zero=True))
    api_key_env: str | None = setting(None, Str(nonempty=True))
    """Name of the environment variable holding the API key (the key itself never goes in a recipe)."""
    client_workers: int = setting(1, Int(min=1, max=1024))
    """Load-generator processes; raise it when the self-check says the client is the bottleneck."""
    self_check: Literal["fail", "warn"] = setting("fail", Enum(("fail", "warn")))
    self_check_limits: dict[str, float] = setting({}, NumberMap(
        _self_check_limits, "a mapping of engine.SelfCheckLimits field to number"))
    """Overrides of ``engine.SelfCheckLimits`` (max_loop_lag_p99_ms, max_send_lag_p99_ms, ...)."""
    seed: int | None = setting(None, Int(min=0))
    """Prompt words and arrival schedules. Unset: schedules use 0, and prompts get a fresh salt per session
    so a server that stays up between runs (an external vLLM) cannot answer from its prefix cache; set it
    to send exactly the same prompts again (then restart the server between runs)."""


# --------------------------------------------------------------------------------- Redis and PostgreSQL

REDIS_OPERATIONS = ("get", "set")
#: RESP readers: ``auto`` = hiredis when installed, else the pure-Python one.
REDIS_PARSERS = ("auto", "hiredis", "python")
#: Redis refuses string values over 512 MB whatever proto-max-bulk-len says.
REDIS_MAX_STRING = 512 * 1024 * 1024


@dataclass(frozen=True)
class RedisSettings:
    """``settings.redis`` (or top-level ``settings``): the Redis workload (``workloads/redis_client.py``) and
    the size of each measured trial of ``benchmarks/test_redis.py``."""

    mix: dict[str, float] = setting(parse_mix("get:set=90:10", REDIS_OPERATIONS), Mix(REDIS_OPERATIONS))
    key_size: int | None = setting(None, Size(minimum=1, maximum=REDIS_MAX_STRING))
    """Full key length in bytes (prefix included); default: the shortest that holds every key index."""
    value_size: int = setting(64, Size(minimum=0, maximum=REDIS_MAX_STRING,
                                       limit="Redis's 512 MB string limit"))
    keyspace: int = setting(10_000, _count())
    pipeline: int = setting(1, Int(min=1, max=1_000_000))
    timeout_s: float = setting(5.0, _seconds())
    connect_timeout_s: float = setting(5.0, _seconds())
    allow_existing_data: bool = setting(False, Bool())
    db: int | None = setting(None, Int(min=0, max=1_000_000))
    """Default: the service's ``extra.db``, else 0."""
    username: str | None = setting(None, Str(nonempty=True))
    password: str | None = setting(None, Str(nonempty=True), secret=True)
    seed: int = setting(0, Int(min=0))
    reconnect_backoff_s: float = setting(0.05, _seconds(zero=True))
    parser: str = setting("auto", Enum(REDIS_PARSERS))
    # -- the benchmark's trial size
    duration_s: float | None = setting(0.5, _seconds())
    requests: int | None = setting(None, _count())
    warmup_requests: int = setting(100, _count(0))
    workers: int = setting(1, Int(min=1, max=1024))


POSTGRES_OPERATIONS = ("point_select", "range_scan", "insert", "update", "tpcb")
ISOLATION_LEVELS = ("read committed", "read_committed", "repeatable read", "repeatable_read", "serializable")


def _isolation(value: str) -> str:
    return value.replace("_", " ")


@dataclass(frozen=True)
class PostgresSettings:
    """``settings.postgres`` (or top-level ``settings``): the PostgreSQL workload
    (``workloads/postgres_client.py``) and the size of each measured trial of ``benchmarks/test_postgres.py``."""

    mix: dict[str, float] = setting(parse_mix("tpcb", POSTGRES_OPERATIONS), Mix(POSTGRES_OPERATIONS))
    scale: int = setting(1, Int(min=1, max=1_000_000))
    accounts_per_branch: int = setting(100_000, _count())
    range_rows: int = setting(100, _count())
    isolation: str = setting("read committed", Enum(ISOLATION_LEVELS), convert=_isolation)
    statement_timeout_s: float = setting(5.0, _seconds())
    pool_timeout_s: float = setting(5.0, _seconds())
    connect_timeout_s: float = setting(5.0, _seconds())
    allow_existing_data: bool = setting(False, Bool())
    seed: int = setting(0, Int(min=0))
    dsn: str | None = setting(None, Str(nonempty=True), secret=True)
    """Default: the service's connection string."""
    pipeline: bool = setting(False, Bool())
    # -- the benchmark's trial size
    duration_s: float | None = setting(0.5, _seconds())
    requests: int | None = setting(None, _count())
    warmup_requests: int = setting(20, _count(0))
    workers: int = setting(1, Int(min=1, max=1024))


# ------------------------------------------------------------------------------------- S3 and vector DBs

@dataclass(frozen=True)
class S3Settings:
    """Top-level ``settings.s3_*`` of ``benchmarks/test_s3.py`` (the recipe key is ``s3_`` + the field)."""

    access_key: str | None = setting(None, Str(), key="s3_access_key", secret=True)
    """Default: the service's own ``access_key``; never printed or stored in reports."""
    secret_key: str | None = setting(None, Str(), key="s3_secret_key", secret=True)
    bucket: str | None = setting(None, Str(nonempty=True), key="s3_bucket")
    """A bucket to use instead of the run's own ``hwbench-<run>``."""
    requests: int = setting(40, _count(), key="s3_requests")
    warmup_requests: int = setting(4, _count(0), key="s3_warmup_requests")
    read_fraction: float = setting(0.5, Float(ge=0, le=1), key="s3_read_fraction")
    """GET share of the mixed test."""
    read_timeout_s: float = setting(30.0, _seconds(), key="s3_read_timeout_s")
    allow_existing_data: bool = setting(False, Bool())


@dataclass(frozen=True)
class VectorSettings:
    """Top-level ``settings.vector_*`` and ``settings.qdrant_query_api`` of ``benchmarks/test_vector_db.py``."""

    queries: int = setting(100, _count(), key="vector_queries")
    batch_size: int = setting(250, _count(), key="vector_batch_size")
    metric: str = setting("cosine", Enum(("cosine", "l2", "ip")), key="vector_metric")
    insert_concurrency: int = setting(1, Int(min=1, max=100_000), key="vector_insert_concurrency")
    warmup_queries: int = setting(5, _count(0), key="vector_warmup_queries")
    timeout_s: float = setting(30.0, _seconds(), key="vector_timeout_s")
    seed: int = setting(0, Int(min=0), key="vector_seed")
    qdrant_query_api: str = setting("query", Enum(("query", "search")))
    """``query`` (/points/query, Qdrant >= 1.10) or ``search`` (/points/search, older servers)."""
    allow_existing_data: bool = setting(False, Bool())


@dataclass(frozen=True)
class WorkloadSettings:
    """Every workload's typed settings of one recipe (``Recipe.workloads``, ``hwbench.workloads``)."""

    llm: LLMSettings = dataclasses.field(default_factory=LLMSettings)
    redis: RedisSettings = dataclasses.field(default_factory=RedisSettings)
    postgres: PostgresSettings = dataclasses.field(default_factory=PostgresSettings)
    s3: S3Settings = dataclasses.field(default_factory=S3Settings)
    vector: VectorSettings = dataclasses.field(default_factory=VectorSettings)


LLM: Declared = Declared(LLMSettings, blank_is_default=True, unknown_what="LLM benchmark setting")
REDIS: Declared = Declared(RedisSettings, blank_is_default=True)
POSTGRES: Declared = Declared(PostgresSettings, blank_is_default=True)
S3: Declared = Declared(S3Settings, blank_is_default=True)
VECTOR: Declared = Declared(VectorSettings, blank_is_default=True)

#: Sections of ``settings`` that are one workload's own mapping.
SECTIONS: dict[str, Declared] = {"llm": LLM, "redis": REDIS, "postgres": POSTGRES}
#: Top-level key prefixes reserved for a workload: an undeclared key with one is a typo.
RESERVED_PREFIXES: dict[str, tuple[Declared, ...]] = {"s3_": (S3,), "vector_": (VECTOR,), "qdrant_": (VECTOR,)}


def check_workload_settings(settings: dict[str, Any], path: str, issues: list[Issue]) -> Any:
    """Build :class:`WorkloadSettings` from a recipe's (JSON-clean) ``settings`` mapping, every problem
    appended to ``issues`` with its field path; :data:`INVALID` when there was one."""
    found: list[Issue] = []
    top = {k: v for k, v in settings.items() if k not in SECTIONS}
    built: dict[str, Any] = {"llm": LLM.check(settings.get("llm"), join(path, "llm"), found)}
    for name, decl in (("redis", REDIS), ("postgres", POSTGRES)):
        section = settings.get(name)
        overridden = section if isinstance(section, dict) else {}
        shared_issues: list[Issue] = []
        shared = decl.check_known({k: v for k, v in top.items() if k not in overridden}, path, shared_issues)
        for issue in shared_issues:  # a top-level key applies to every workload that reads it: say so
            key = (issue.field or "").removeprefix(f"{path}.")
            hint = (f"a top-level {key} applies to both redis and postgres: move it under the section of the "
                    f"one it is for, or give {join(path, name)} its own {key}")
            found.append(Issue(issue.field, issue.problem, f"{issue.fix}; {hint}" if issue.fix else hint))
        own = decl.record().check(section, join(path, name), found)
        built[name] = INVALID if INVALID in (shared, own) else decl.build({**shared, **own})
    for name, decl in (("s3", S3), ("vector", VECTOR)):
        built[name] = decl.check(decl.known(top), path, found)
    for key in top:
        for prefix, owners in RESERVED_PREFIXES.items():
            declared = [k for owner in owners for k in owner.recipe_keys()]
            if isinstance(key, str) and key.startswith(prefix) and key not in declared:
                found.append(unknown_key(path, key, declared,
                                         f"setting ({prefix}* settings belong to a shipped benchmark)"))
    unique: list[Issue] = []
    for issue in found:  # a top-level key both data services reject is one mistake, reported once
        if all((issue.field, issue.problem) != (seen.field, seen.problem) for seen in unique):
            unique.append(issue)
    issues.extend(unique)
    if unique or INVALID in built.values():
        return INVALID
    return WorkloadSettings(**built)


def check_section(decl: Declared, raw: Any, path: str, *, source: str | None = None) -> Any:
    """Check one settings mapping outside a recipe (a test, a script): the typed record, or a
    :class:`RecipeError` listing every problem. The same declaration and code as the recipe loader."""
    issues: list[Issue] = []
    built = decl.check(raw, path, issues)
    if issues or built is INVALID:
        raise RecipeError(issues or [Issue(path, "invalid settings")], file=source)
    return built
