"""Every recipe setting is declared once and checked once, at load: the typed records the workloads read.

What is proven here, for each section (``settings.llm``, ``settings.redis``, ``settings.postgres``, the
``s3_*`` and ``vector_*`` settings, ``hardware``, ``baseline``, ``mlflow``, ``resources``, service entries):
a misspelt key is rejected at load with its field path and a "did you mean"; a value that arrives as a
``${ENV}`` string is coerced to the declared type; ``hwbench recipes validate`` says the same as the loader;
and the workloads read the typed record the loader built instead of parsing the raw mapping again.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_hwbench.measure.recorder import Recorder
from pytest_hwbench.recipe import validate_cmd
from pytest_hwbench.recipe.loader import load_recipe_text
from pytest_hwbench.recipe.model import BaselinePolicy, HardwareSettings, Recipe
from pytest_hwbench.recipe.schema import RecipeError
from pytest_hwbench.recipe.specs import Declared, Int, default_of, setting
from pytest_hwbench.recipe.workload_settings import (
    LLMSettings,
    PostgresSettings,
    RedisSettings,
    S3Settings,
    VectorSettings,
    WorkloadSettings,
)

REPO = Path(__file__).resolve().parents[1]
SRC = "r.yaml"


def load(body: str, env: dict[str, str] | None = None) -> Recipe:
    return load_recipe_text("version: 1\n" + body, SRC, env=env or {})


def error(body: str, env: dict[str, str] | None = None) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load(body, env)
    return info.value


# One misspelling per section: (recipe text, the field path, the key it should have been).
MISSPELT = {
    "llm": ("settings: {llm: {prompt_tokns: 8}}", "settings.llm.prompt_tokns", "prompt_tokens"),
    "redis": ("settings: {redis: {keyspce: 8}}", "settings.redis.keyspce", "keyspace"),
    "postgres": ("settings: {postgres: {isolaton: serializable}}", "settings.postgres.isolaton", "isolation"),
    "s3": ("settings: {s3_requets: 8}", "settings.s3_requets", "s3_requests"),
    "vector": ("settings: {vector_querys: 8}", "settings.vector_querys", "vector_queries"),
    "qdrant": ("settings: {qdrant_query_apii: query}", "settings.qdrant_query_apii", "qdrant_query_api"),
    "hardware": ("hardware: {fio_iodepht: 8}", "hardware.fio_iodepht", "fio_iodepth"),
    "hardware.models": ("hardware: {models: {default_cout: 2}}", "hardware.models.default_cout", "default_count"),
    "baseline": ("baseline: {tolerence: 0.1}", "baseline.tolerence", "tolerance"),
    "baseline.metrics": ("baseline: {metrics: {x: {tolerence: 0.1}}}", "baseline.metrics.x.tolerence",
                         "tolerance"),
    "mlflow": ("mlflow: {experimnt: x}", "mlflow.experimnt", "experiment"),
    "resources": ("resources: {intervl_ms: 500}", "resources.intervl_ms", "interval_ms"),
    "service": ("services: {db: {kind: redis, startup_timout: 3}}", "services.db.startup_timout",
                "startup_timeout"),
}


@pytest.mark.parametrize("section", list(MISSPELT))
def test_a_misspelt_key_in_every_section_is_rejected_at_load_with_its_path_and_did_you_mean(section: str) -> None:
    text, path, meant = MISSPELT[section]
    err = error(text + "\n")
    assert err.field == path
    rendered = str(err)
    assert rendered.startswith(f"{SRC}: {path}: unknown "), rendered
    assert f"did you mean '{meant}'?" in rendered, rendered


def test_every_misspelling_is_reported_in_one_go_and_validate_says_the_same(tmp_path: Path) -> None:
    settings = {"llm": "{prompt_tokns: 8}", "redis": "{keyspce: 8}", "postgres": "{isolaton: serializable}"}
    body = ("settings:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items())
            + "  s3_requets: 8\n  vector_querys: 8\n"
            + "hardware: {fio_iodepht: 8}\nbaseline: {tolerence: 0.1}\nmlflow: {experimnt: x}\n"
            + "resources: {intervl_ms: 500}\n")
    err = error(body)
    fields = [issue.field for issue in err.issues]
    assert fields == ["settings.llm.prompt_tokns", "settings.redis.keyspce", "settings.postgres.isolaton",
                      "settings.s3_requets", "settings.vector_querys", "hardware.fio_iodepht",
                      "baseline.tolerence", "mlflow.experimnt", "resources.intervl_ms"], fields
    # ``hwbench recipes validate`` runs the same pass: the same lines, with the file it was given.
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\n" + body)
    out = io.StringIO()
    assert validate_cmd.run([str(recipe)], out=out) == 1
    assert out.getvalue().strip() == str(err).replace(f"{SRC}:", f"{recipe}:").strip()


def test_values_from_env_strings_are_coerced_to_the_declared_types_in_every_section() -> None:
    r = load("""\
settings:
  llm: {prompt_tokens: "${N}", ignore_eos: "${YES}", temperature: "${HALF}"}
  redis: {keyspace: "${N}", value_size: "${SIZE}", allow_existing_data: "${YES}"}
  postgres: {scale: "${N}", statement_timeout_s: "${HALF}", pipeline: "${YES}"}
  s3_requests: "${N}"
  s3_read_fraction: "${HALF}"
  vector_queries: "${N}"
  vector_timeout_s: "${HALF}"
hardware: {fio_iodepth: "${N}", stream_cross_check: "${YES}", models: {default_count: "${N}"}}
baseline: {reruns: "${N}", tolerance: "${HALF}"}
mlflow: {probe_retries: "${N}", enabled: "${YES}"}
resources: {interval_ms: "${MS}", gpu: "${YES}"}
""", env={"N": "7", "YES": "true", "HALF": "0.5", "SIZE": "4kb", "MS": "250"})
    w = r.workloads
    assert (w.llm.prompt_tokens, w.llm.ignore_eos, w.llm.temperature) == (7, True, 0.5)
    assert (w.redis.keyspace, w.redis.value_size, w.redis.allow_existing_data) == (7, 4096, True)
    assert (w.postgres.scale, w.postgres.statement_timeout_s, w.postgres.pipeline) == (7, 0.5, True)
    assert (w.s3.requests, w.s3.read_fraction, w.vector.queries, w.vector.timeout_s) == (7, 0.5, 7, 0.5)
    assert (r.hardware.fio_iodepth, r.hardware.stream_cross_check, r.hardware.models.default_count) == (7, True, 7)
    assert (r.baseline.reruns, r.baseline.tolerance) == (7, 0.5)
    assert (r.mlflow.probe_retries, r.mlflow.enabled, r.resources.interval_ms, r.resources.gpu) == (7, True, 250, True)
    for value in (w.llm.prompt_tokens, w.redis.keyspace, w.s3.requests, r.hardware.fio_iodepth, r.baseline.reruns):
        assert type(value) is int


def test_an_empty_env_value_means_the_declared_default() -> None:
    r = load("settings:\n  llm: {model: '${M:-}', requests: '${R:-}'}\n  redis: {keyspace: '${K:-}'}\n"
             "  s3_requests: '${S:-}'\n")
    assert r.workloads.llm == LLMSettings()
    assert r.workloads.redis.keyspace == default_of(RedisSettings, "keyspace")
    assert r.workloads.s3.requests == default_of(S3Settings, "requests")


def test_bad_values_in_each_workload_section_name_the_field() -> None:
    err = error("settings:\n  llm: {requests: 0, api: responses}\n  redis: {mix: 'get:del=1:1', value_size: lots}\n"
                "  postgres: {isolation: snapshot}\n  s3_read_fraction: 2\n  vector_metric: hamming\n")
    text = str(err)
    for line in ("settings.llm.requests: 0 is not an integer >= 1",
                 "settings.llm.api: 'responses' is not one of chat, completions",
                 "settings.redis.mix: unknown operation 'del'",
                 "settings.redis.value_size: must be a size, got 'lots'",
                 "settings.postgres.isolation: 'snapshot' is not one of",
                 "settings.s3_read_fraction: 2 is not a number >= 0 and <= 1",
                 "settings.vector_metric: 'hamming' is not one of cosine, l2, ip"):
        assert f"{SRC}: {line}" in text, text


def test_top_level_data_service_keys_apply_to_both_and_a_section_wins() -> None:
    r = load("settings: {allow_existing_data: true, timeout_s: 2, redis: {timeout_s: 3}}\n")
    assert r.workloads.redis.timeout_s == 3.0 and r.workloads.redis.allow_existing_data is True
    assert r.workloads.postgres.allow_existing_data is True
    assert r.workloads.s3.allow_existing_data is True and r.workloads.vector.allow_existing_data is True
    # a top-level mix one of them cannot run is a load error that says how to fix it
    err = error("settings: {mix: 'get:set=1:1'}\n")
    assert err.field == "settings.mix" and "give settings.postgres its own mix" in str(err)
    assert load("settings: {mix: set, postgres: {mix: tpcb}}\n").workloads.redis.mix == {"set": 1.0}
    # other top-level keys stay free for the user's own benchmarks
    assert load("settings: {scratch_dir: /tmp, token: x}\n").settings == {"scratch_dir": "/tmp", "token": "x"}


def test_the_typed_records_are_frozen_and_keep_secrets_out_of_repr() -> None:
    r = load("settings:\n  redis: {password: hunter2-secret}\n  s3_secret_key: abc-secret-key\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.workloads.redis.keyspace = 1  # type: ignore[misc]
    assert r.workloads.redis.password == "hunter2-secret"
    assert "hunter2" not in repr(r.workloads) and "abc-secret-key" not in repr(r.workloads)


def test_the_workloads_read_the_record_the_loader_built_not_the_raw_mapping() -> None:
    from pytest_hwbench.services.base import Endpoint
    from pytest_hwbench.workloads.kv_metrics import closed_load
    from pytest_hwbench.workloads.llm_bench import llm_settings
    from pytest_hwbench.workloads.postgres_client import PostgresWorkload
    from pytest_hwbench.workloads.redis_client import RedisWorkload

    r = load("settings:\n  llm: {prompt_tokens: 77}\n  redis: {keyspace: 500, requests: 40, workers: 2}\n"
             "  postgres: {scale: 2, duration_s: 0.25}\n")
    # Poison the raw mapping: a second parse of it would fail or read these values.
    poisoned = dataclasses.replace(r, settings={"llm": {"prompt_tokens": "garbage"}, "redis": {"keyspace": -1}})
    hwbench = Recorder("t", recipe=poisoned)
    assert hwbench.workloads is r.workloads
    assert llm_settings(hwbench) is r.workloads.llm and llm_settings(hwbench).prompt_tokens == 77
    redis = RedisWorkload.from_endpoint(Endpoint(host="127.0.0.1", port=1, url=""), hwbench.workloads.redis)
    assert redis.keyspace == 500
    spec = closed_load(hwbench.workloads.redis, 4, drain_timeout_s=1.0)
    assert (spec.users, spec.requests, spec.warmup_requests) == (4, 40, default_of(RedisSettings, "warmup_requests"))
    pg = PostgresWorkload.from_endpoint(Endpoint(host="h", port=1, url="", extra={"dsn": "postgresql://u@h/d"}),
                                        hwbench.workloads.postgres)
    assert pg.scale == 2 and closed_load(hwbench.workloads.postgres, 1, drain_timeout_s=1.0).duration_s == 0.25
    # without a recipe (a unit test's bare Recorder): the declared defaults
    assert Recorder("t").workloads == WorkloadSettings()
    assert llm_settings(SimpleNamespace(recipe=None)) == LLMSettings()


def test_no_shipped_benchmark_or_workload_re_reads_the_raw_settings() -> None:
    """The shipped benchmarks and workloads take typed records; string-keyed reads of the recipe's settings
    (``settings.get("requests", 8)`` with a default of their own) are what this refactor removed."""
    pattern = re.compile(r"""(hwbench\.settings|\bsettings)\s*(\.get\(|\[['"])""")
    offenders = []
    files = [*sorted((REPO / "benchmarks").glob("*.py")), *sorted((REPO / "pytest_hwbench/workloads").rglob("*.py"))]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_defaults_are_declared_once_and_code_built_workloads_share_them() -> None:
    from pytest_hwbench.workloads.postgres_client import PostgresWorkload
    from pytest_hwbench.workloads.redis_client import RedisWorkload

    w = RedisWorkload()
    for name in ("keyspace", "pipeline", "timeout_s", "value_size", "mix", "parser"):
        assert getattr(w, name) == default_of(RedisSettings, name), name
    pg = PostgresWorkload(dsn="postgresql://u@h/d")
    for name in ("scale", "accounts_per_branch", "isolation", "mix", "statement_timeout_s"):
        assert getattr(pg, name) == default_of(PostgresSettings, name), name
    assert HardwareSettings().models.select == ("default",) and BaselinePolicy().tolerance == 0.05
    assert VectorSettings().qdrant_query_api == "query"
    # values given in code go through the same declaration (and say where the knob lives)
    with pytest.raises(RecipeError, match=r"settings\.keyspace: 0 is not an integer >= 1"):
        RedisWorkload(keyspace=0)
    assert RedisWorkload(value_size="4kb", mix="set").value_size == 4096


def test_declared_builds_a_record_with_defaults_and_converts() -> None:
    @dataclasses.dataclass(frozen=True)
    class Knobs:
        count: int = setting(3, Int(min=1))
        names: tuple[int, ...] = setting((), Int(), key="name", convert=lambda v: (v,))

    decl = Declared(Knobs)
    issues: list = []
    assert decl.check({"count": "5", "name": 2}, "k", issues) == Knobs(count=5, names=(2,)) and not issues
    assert decl.check(None, "k", issues) == Knobs()
    decl.check({"cont": 1}, "k", issues)
    assert [(i.field, i.problem) for i in issues] == [("k.cont", "unknown key, did you mean 'count'?")]


def test_marker_keywords_come_from_one_declaration() -> None:
    from pytest_hwbench.recipe.schema import MARKER

    issues: list = []
    MARKER.check({"repetition": 5}, "", issues)
    assert [(i.field, i.problem) for i in issues] == [("repetition", "unknown key, did you mean 'repetitions'?")]


# ---------------------------------------------------------------------------------- service kinds' settings


def _typo(key: str) -> str:
    """``key`` with one letter dropped (``startup_timeout`` -> ``startup_timout``): a near miss."""
    cut = len(key) // 2
    return key[:cut] + key[cut + 1:]


def _service_kinds() -> list[str]:
    from pytest_hwbench.services.catalog import kinds

    return [name for name in kinds() if not name.startswith("unit-")]


@pytest.mark.parametrize("kind", _service_kinds())
def test_a_misspelt_setting_of_every_service_kind_is_rejected_at_load_with_its_path(kind: str,
                                                                                     tmp_path: Path) -> None:
    """Each kind's own settings (``ServiceKind.Settings``) and the backend's are declared: a near miss is an
    error naming ``services.<name>.<key>`` with "did you mean", at load and in ``hwbench recipes validate``."""
    from pytest_hwbench.recipe.specs import declared_fields
    from pytest_hwbench.services.catalog import get_kind

    own = list(declared_fields(get_kind(kind).Settings))
    meant = max(own, key=len) if own else "startup_timeout"  # a kind with no settings of its own: a backend one
    body = f"services:\n  svc: {{kind: {kind}, backend: external, url: 'http://127.0.0.1:1', {_typo(meant)}: 1}}\n"
    err = error(body)
    assert err.field == f"services.svc.{_typo(meant)}", str(err)
    assert f"did you mean '{meant}'?" in str(err), str(err)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\n" + body)
    out = io.StringIO()
    assert validate_cmd.run([str(recipe)], out=out) == 1
    assert out.getvalue().strip() == str(err).replace(f"{SRC}:", f"{recipe}:").strip()


def test_service_settings_are_typed_records_built_at_load_with_env_text_coerced() -> None:
    from pytest_hwbench.services.catalog.ollama import OllamaSettings
    from pytest_hwbench.services.catalog.redis import RedisSettings
    from pytest_hwbench.services.service_settings import DockerSettings, ProcessSettings

    r = load("""\
services:
  cache: {kind: redis, io_threads: "${THREADS:-2}", maxmemory: 1gb, startup_timeout: "${WAIT}", port: "${PORT:-}"}
  llm: {kind: ollama, backend: docker, pull: "${PULL}", pull_timeout: "${PT}", container_port: "${CP}"}
""", env={"WAIT": "12.5", "PULL": "false", "PT": "60", "CP": "11435"})
    cache = r.services["cache"].config
    assert cache is not None and cache.own_as(RedisSettings) == RedisSettings(maxmemory="1gb", io_threads=2)
    backend = cache.backend_as(ProcessSettings)
    assert backend.startup_timeout == 12.5 and backend.port is None  # ``${PORT:-}`` empty: not given
    llm = r.services["llm"].config
    assert llm is not None
    # ollama's own ``pull`` (the model) is the kind's; the docker image pull policy keeps its default
    assert llm.own_as(OllamaSettings) == OllamaSettings(pull=False, pull_timeout=60.0)
    docker = llm.backend_as(DockerSettings)
    assert (docker.container_port, docker.pull, docker.args, docker.env) == (11435, "missing", (), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        docker.pull = "always"  # type: ignore[misc]
    assert r.services["cache"].settings["io_threads"] == "2"  # the entry as written stays for messages/secrets
    err = error("services:\n  cache: {kind: redis, io_threads: '${T}'}\n", env={"T": "many"})
    assert str(err) == f"{SRC}: services.cache.io_threads: 'many' is not an integer >= 1"


def test_a_service_spec_built_in_code_meets_the_same_declaration() -> None:
    """``ServiceKind.validate`` (what ``start_service`` runs for a spec built in code) is the recipe check."""
    from pytest_hwbench.services.catalog import get_kind
    from pytest_hwbench.services.catalog.redis import RedisSettings

    kind = get_kind("redis")
    config = kind.validate("cache", "process", {"io_threads": "3"})
    assert config.own_as(RedisSettings).io_threads == 3
    with pytest.raises(RecipeError) as info:
        kind.validate("cache", "docker", {"contaner_port": 1})
    assert str(info.value) == "services.cache.contaner_port: unknown key, did you mean 'container_port'?"


def test_catalog_and_backends_read_service_settings_as_attributes_not_string_keys() -> None:
    """No kind or backend re-reads the raw mapping with its own default (``settings.get("pull_timeout",
    3600)``): every service setting is a declared attribute of a typed record."""
    import pytest_hwbench.services as services_pkg

    root = Path(services_pkg.__file__).parent
    files = [root / "docker_backend.py", root / "process.py", root / "external.py", root / "manager.py",
             *sorted((root / "catalog").glob("*.py"))]
    raw = re.compile(r"settings\s*(\.get\(|\[)|settings\s*\)?\s*\.\s*get\(|\"\w+\"\s+in\s+settings")
    offenders = [f"{path.name}:{n}: {line.strip()}" for path in files
                 for n, line in enumerate(path.read_text().splitlines(), 1) if raw.search(line)]
    # ``check_required`` inspects the mapping as written, before any record exists (``${VAR:-}`` left empty)
    offenders = [o for o in offenders if "settings.get(key) in (None, \"\")" not in o
                 and "str(settings.get(\"model\") or \"\")" not in o]
    assert offenders == []
