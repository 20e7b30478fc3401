"""Recipe loading: every kind of bad input gets one clear message naming file, field and fix."""

from __future__ import annotations

import hashlib
import io
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe import validate_cmd
from pytest_hwbench.recipe.interpolate import escape, interpolate, is_secret_name
from pytest_hwbench.recipe.loader import (
    DEFAULT_SOURCE,
    MISSING_FILE_FIX,
    default_recipe,
    load_recipe,
    load_recipe_text,
)
from pytest_hwbench.recipe.model import MetricPolicy, nodeid_matches
from pytest_hwbench.recipe.schema import RecipeError

SRC = "recipes/x.yaml"


def load(text: str, env: dict[str, str] | None = None):
    text = textwrap.dedent(text)
    if text.strip() and not text.lstrip().startswith(("-", "just", "#")) and "version:" not in text:
        text = "version: 1\n" + text  # required; the tests below are about the other keys
    return load_recipe_text(text, SRC, env=env or {})


def error(text: str, env: dict[str, str] | None = None) -> HwbenchInputError:
    with pytest.raises(HwbenchInputError) as info:
        load(text, env)
    return info.value


# ------------------------------------------------------------------------------------------ happy paths

FULL = """\
version: 1
name: vllm-h100
description: vLLM on one H100
testbed: ${TESTBED:-}
repetitions: 5
warmup: 1
sweep:
  concurrency: [1, 8, 64]
  model: [llama-8b]
slo:
  "test_chat*":
    - ttft_ms.p99 < 500
    - error_rate <= 0.01
  "test_host.py::*": output_tok_s.mean >= 900
baseline:
  dir: baselines/h100
  tolerance: 0.1
  inconclusive: rerun
  reruns: 3
  stale_factor: 1.5
  confidence: 0.9
  require: true
  metrics:
    ttft_ms: {tolerance: 0.2}
    itl_ms: {inconclusive: fail}
services:
  llm:
    kind: vllm
    backend: docker
    image: vllm/vllm-openai:v0.6.0
    model: meta-llama/Llama-3.1-8B
    args: [--max-model-len, "8192"]
  cache: {kind: redis}
mlflow:
  tracking_uri: http://mlflow:5000
  experiment: upgrades
  enabled: false
settings:
  prompt_tokens: 512
  nested: {a: [1, 2]}
"""


def test_full_recipe_builds_the_model():
    r = load(FULL)
    assert (r.path, r.name, r.description, r.testbed) == (SRC, "vllm-h100", "vLLM on one H100", None)
    assert (r.repetitions, r.warmup) == (5, 1)
    assert r.sweep == {"concurrency": [1, 8, 64], "model": ["llama-8b"]}
    assert r.slo == {"test_chat*": ["ttft_ms.p99 < 500", "error_rate <= 0.01"],
                     "test_host.py::*": ["output_tok_s.mean >= 900"]}
    b = r.baseline
    assert (b.dir, b.tolerance, b.inconclusive, b.reruns, b.stale_factor, b.confidence, b.require) == (
        "baselines/h100", 0.1, "rerun", 3, 1.5, 0.9, True)
    assert b.metrics == {"ttft_ms": MetricPolicy(tolerance=0.2), "itl_ms": MetricPolicy(inconclusive="fail")}
    assert b.tolerance_for("ttft_ms") == 0.2 and b.tolerance_for("other") == 0.1
    assert b.inconclusive_for("itl_ms") == "fail"
    llm = r.services["llm"]
    assert (llm.name, llm.kind, llm.backend) == ("llm", "vllm", "docker")
    assert llm.settings == {"image": "vllm/vllm-openai:v0.6.0", "model": "meta-llama/Llama-3.1-8B",
                            "args": ["--max-model-len", "8192"]}
    assert r.services["cache"].backend == "process"  # the default backend
    assert (r.mlflow.tracking_uri, r.mlflow.experiment, r.mlflow.enabled) == (
        "http://mlflow:5000", "upgrades", False)
    assert r.settings == {"prompt_tokens": 512, "nested": {"a": [1, 2]}}
    assert r.text == FULL  # un-interpolated: ${TESTBED:-} is still there
    assert r.sha256 == hashlib.sha256(FULL.encode()).hexdigest()
    assert r.secret_values == frozenset()


def test_version_is_required():
    assert load("version: 1\n").repetitions == 3
    with pytest.raises(HwbenchInputError, match="version: required key is missing"):
        load_recipe_text("repetitions: 2\n", SRC, env={})


def test_minimal_recipe_takes_model_defaults_and_name_from_file_stem(tmp_path):
    path = tmp_path / "my-box.yaml"
    path.write_text("version: 1\nrepetitions: 2\n")
    r = load_recipe(path)
    assert (r.name, r.repetitions, r.warmup, r.services, r.slo, r.sweep) == ("my-box", 2, 0, {}, {}, {})
    assert r.path == str(path) and r.baseline.tolerance == 0.05 and r.mlflow.enabled is True


def test_null_sections_mean_empty():
    r = load("services:\nslo:\nbaseline:\nmlflow:\nsettings:\n")
    assert r.services == {} and r.slo == {} and r.settings == {} and r.baseline.dir == "baselines"


def test_default_recipe_loads():
    r = default_recipe()
    assert (r.name, r.path, r.repetitions, r.warmup) == ("default", DEFAULT_SOURCE, 3, 0)
    assert r.services == {} and r.slo == {} and r.sweep == {}
    assert r.sha256 == hashlib.sha256(r.text.encode()).hexdigest()


def test_slo_single_string_is_normalised_to_a_list():
    r = load("slo:\n  test_a: ttft_ms.p99 < 500\n")
    assert r.slo == {"test_a": ["ttft_ms.p99 < 500"]}


def test_dates_stay_strings():
    # PyYAML would make a datetime.date, which JSON reports cannot hold.
    assert load("settings: {since: 2024-01-01}\n").settings == {"since": "2024-01-01"}


@pytest.mark.parametrize(("nodeid", "pattern", "expected"), [
    ("benchmarks/test_host.py::test_matmul[256]", "test_matmul*", True),
    ("benchmarks/test_host.py::test_matmul[256]", "test_host.py::*", True),
    ("benchmarks/test_host.py::test_matmul[256]", "benchmarks/*", True),
    ("benchmarks/test_host.py::test_matmul[256]", "*[[]256]", True),
    ("benchmarks/test_host.py::test_matmul[256]", "test_memcpy*", False),
    ("benchmarks/test_host.py::test_matmul[256]", "host.py::*", False),  # not at a boundary
    ("benchmarks/test_llm.py::TestChat::test_ttft[8]", "TestChat::*", True),
])
def test_nodeid_matches(nodeid, pattern, expected):
    assert nodeid_matches(nodeid, pattern) is expected


def test_slos_for_collects_matching_rules_in_recipe_order():
    r = load(FULL)
    assert r.slos_for("benchmarks/test_host.py::test_chat_x[1]") == [
        ("test_chat*", "ttft_ms.p99 < 500"), ("test_chat*", "error_rate <= 0.01"),
        ("test_host.py::*", "output_tok_s.mean >= 900")]
    assert r.slos_for("benchmarks/test_other.py::test_x") == []


# ------------------------------------------------------------------------------------------- bad input


def test_missing_file_names_path_and_fix(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(HwbenchInputError) as info:
        load_recipe(missing)
    assert str(info.value) == f"{missing}: recipe file not found (fix: {MISSING_FILE_FIX})"
    with pytest.raises(HwbenchInputError, match="is a directory"):
        load_recipe(tmp_path)


def test_malformed_yaml_reports_line_and_column():
    err = error("name: x\nrepetitions: 3\nslo: [a, b\nwarmup: 1\n")
    assert err.file == SRC and str(err).startswith(f"{SRC}: line ")
    assert "invalid YAML" in str(err) and "fix:" in str(err)
    err = error("name: x\nservices:\n  llm: kind: vllm\nversion: 1\n")
    assert err.field == "line 3, column 12"


def test_duplicate_key_is_an_error():
    err = error("slo:\n  a: x < 1\nrepetitions: 3\nslo:\n  b: y < 1\nversion: 1\n")
    assert err.field == "line 4, column 1" and "duplicate key 'slo'" in str(err)


@pytest.mark.parametrize(("text", "problem"), [
    ("- a\n- b\n", "the top level is a list, not a mapping"),
    ("just text\n", "the top level is a str, not a mapping"),
    ("", "the recipe is empty"),
    ("# only a comment\n", "the recipe is empty"),
])
def test_top_level_must_be_a_mapping(text, problem):
    err = error(text)
    assert isinstance(err, RecipeError) and str(err).startswith(f"{SRC}: {problem} (fix: ")


def test_bad_enum_exact_message():
    err = error("services:\n  llm: {kind: vllm, backend: dokcer}\n")
    assert str(err) == f"{SRC}: services.llm.backend: 'dokcer' is not one of docker, process, external"
    assert (err.file, err.field) == (SRC, "services.llm.backend")


def test_unknown_key_suggests_the_closest():
    assert str(error("repetiton: 3\n")) == f"{SRC}: repetiton: unknown key, did you mean 'repetitions'?"
    assert str(error("baseline: {tolerence: 0.1}\n")) == (
        f"{SRC}: baseline.tolerence: unknown key, did you mean 'tolerance'?")
    msg = str(error("zzz: 1\n"))
    assert msg.startswith(f"{SRC}: zzz: unknown key (fix: remove it; keys allowed here: baseline, ")


@pytest.mark.parametrize(("text", "message"), [
    ("version: 2", "version: 2 is not one of 1 (fix: this pytest-hwbench reads recipe format version 1)"),
    ("repetitions: three", "repetitions: 'three' is not an integer >= 1"),
    ("repetitions: 0", "repetitions: 0 is not an integer >= 1"),
    ("repetitions: true", "repetitions: true is not an integer >= 1"),
    ("repetitions: 2.5", "repetitions: 2.5 is not an integer >= 1"),
    ("warmup: -1", "warmup: -1 is not an integer >= 0"),
    ("name: ''", "name: '' is not a non-empty string"),
    ("testbed: 4090", "testbed: 4090 is not a non-empty string or null (fix: quote it: '4090')"),
    ("description: [a]", "description: ['a'] is not a string"),
    ("baseline: {tolerance: 1.5}", "baseline.tolerance: 1.5 is not a number > 0 and < 1"),
    ("baseline: {tolerance: .nan}", "baseline.tolerance: nan is not a number > 0 and < 1"),
    ("baseline: {confidence: 0.5}", "baseline.confidence: 0.5 is not a number > 0.5 and < 1"),
    ("baseline: {stale_factor: 0.9}", "baseline.stale_factor: 0.9 is not a number >= 1"),
    ("baseline: {reruns: -1}", "baseline.reruns: -1 is not an integer >= 0"),
    ("baseline: {require: maybe}", "baseline.require: 'maybe' is not true or false"),
    ("baseline: {inconclusive: ignore}", "baseline.inconclusive: 'ignore' is not one of fail, warn, rerun"),
    ("baseline: {metrics: {ttft_ms: {inconclusive: x}}}",
     "baseline.metrics.ttft_ms.inconclusive: 'x' is not one of fail, warn, rerun"),
    ("baseline: 5", "baseline: 5 is not a mapping (fix: write a mapping with keys such as confidence, "),
    ("sweep: {concurrency: []}", "sweep.concurrency: [] is not a non-empty list of scalars"),
    ("sweep: {concurrency: 8}", "sweep.concurrency: 8 is not a non-empty list of scalars"),
    ("sweep: {concurrency: [1, {a: 1}]}", "sweep.concurrency[1]: {'a': 1} is not a scalar"),
    ("sweep: {my-arg: [1]}", "sweep.my-arg: key 'my-arg' is not a Python identifier"),
    ("slo: {test_a: ['x < 1', '']}", "slo.test_a[1]: '' is not an SLO expression"),
    ("slo: {test_a: 3}", "slo.test_a: 3 is not an SLO expression or a list of SLO expressions"),
    ("slo: {test_a: 'ttft_ms.p99 < 1.0e999'}", "slo.test_a: SLO 'ttft_ms.p99 < 1.0e999' has a bound that"),
    ("slo: {test_a: 'ttft_ms.p99 <'}", "slo.test_a: cannot parse SLO 'ttft_ms.p99 <'"),
    ("repetitions: 1000000000000000000000000000000", "repetitions: 1000000000000000000000000000000 is more"),
    ("services: {db: {kind: mongodb}}", "services.db.kind: unknown service kind 'mongodb' (fix: use one of"),
    ("services: {db: {kind: redis, backnd: docker}}", "services.db.backnd: unknown key, did you mean 'backend'?"),
    ("services: {db: {kind: redis, startup_timout: 3}}",
     "services.db.startup_timout: unknown key, did you mean 'startup_timeout'?"),
    ("services: {db: {kind: redis, port: 99999}}", "services.db.port: 99999 is more than the maximum 65535"),
    ("services: {db: {kind: redis, startup_timeout: -1}}", "services.db.startup_timeout: -1 is not a number > 0"),
    ("settings: {llm: {prompt_token: 5}}", "settings.llm.prompt_token: unknown LLM benchmark setting"),
    ("settings: {redis: {vaule_size: 5}}", "settings.redis.vaule_size: unknown key, did you mean 'value_size'?"),
    ("slo: [a]", "slo: ['a'] is not a mapping of node-id pattern to SLO expressions"),
    ("services: {llm: {backend: docker}}",
     "services.llm.kind: required key is missing (fix: add kind: <service kind>, e.g. kind: vllm)"),
    ("services: {llm: vllm}", "services.llm: 'vllm' is not a mapping"),
    ("services: {llm: {kind: vllm, when: !!binary aGk=}}", "services.llm.when: b'hi' is not plain data"),
    ("mlflow: {enabled: 2}", "mlflow.enabled: 2 is not true or false"),
    ("settings: [1]", "settings: [1] is not a mapping of setting name to value"),
])
def test_wrong_types_and_values(text, message):
    err = error(text + "\n")
    assert str(err).startswith(f"{SRC}: {message}"), str(err)


def test_multiple_errors_are_reported_together_in_file_order():
    err = error("""\
        repetitions: 0
        services:
          llm: {kind: vllm, backend: dokcer, token: "${MISSING}"}
        baseline: {tolerence: 0.1}
        """)
    assert isinstance(err, RecipeError) and len(err.issues) == 4
    assert str(err).splitlines() == [
        f"{SRC}: repetitions: 0 is not an integer >= 1",
        f"{SRC}: services.llm.backend: 'dokcer' is not one of docker, process, external",
        f"{SRC}: services.llm.token: environment variable MISSING is not set "
        "(fix: set MISSING or write ${MISSING:-default})",
        f"{SRC}: baseline.tolerence: unknown key, did you mean 'tolerance'?",
    ]
    assert (err.field, err.problem) == ("repetitions", "0 is not an integer >= 1")  # the first issue


# ------------------------------------------------------------------------------------------ interpolation


def test_env_interpolation_and_defaults():
    r = load("""\
        name: ${NAME}
        description: "on ${HOST:-localhost}:${PORT:-8000}"
        testbed: ${BOX:-fallback}
        mlflow: {experiment: "${EXP:-}x"}
        """, env={"NAME": "run-1", "BOX": ""})
    assert r.name == "run-1"
    assert r.description == "on localhost:8000"
    assert r.testbed == "fallback"  # an empty variable takes the default, like the shell's :-
    assert r.mlflow.experiment == "x"


def test_set_but_empty_variable_without_default_is_empty():
    assert load("description: '[${EMPTY}]'\n", env={"EMPTY": ""}).description == "[]"


def test_escape_gives_a_literal_dollar_brace():
    r = load("description: 'cost $${HOME} and $5 and $$x'\n", env={"HOME": "/root"})
    assert r.description == "cost ${HOME} and $5 and $$x"


def test_missing_variable_names_field_and_variable():
    err = error("services:\n  llm: {kind: vllm, url: 'http://${LLM_HOST}/v1'}\n")
    assert str(err) == (f"{SRC}: services.llm.url: environment variable LLM_HOST is not set "
                        "(fix: set LLM_HOST or write ${LLM_HOST:-default})")


@pytest.mark.parametrize(("value", "problem"), [
    ("${1BAD}", "malformed reference '${1BAD}'"),
    ("${VAR:default}", "malformed reference '${VAR:default}'"),
    ("${VAR", "unterminated '${'"),
    ("${A:-${B}}", "nested reference"),
])
def test_malformed_references_are_errors(value, problem):
    err = error(f"description: '{value}'\n")
    assert str(err).startswith(f"{SRC}: description: {problem}") and "(fix: " in str(err)


def test_numeric_coercion_only_where_the_schema_wants_numbers():
    env = {"REPS": "7", "TOL": "0.2", "REQ": "true", "BUILD": "007"}
    r = load("""\
        repetitions: ${REPS:-3}
        warmup: ${WARM:-2}
        description: ${BUILD}
        baseline: {tolerance: "${TOL}", require: "${REQ}"}
        sweep: {size: ["${BUILD}", 8]}
        """, env=env)
    assert r.repetitions == 7 and r.warmup == 2 and r.baseline.tolerance == 0.2
    assert r.baseline.require is True
    assert r.description == "007"  # a string field keeps the string
    assert r.sweep == {"size": ["007", 8]}  # interpolated sweep values stay strings
    assert str(error("repetitions: ${REPS}\n", env={"REPS": "many"})) == (
        f"{SRC}: repetitions: 'many' is not an integer >= 1")


def test_env_values_never_change_the_yaml_structure():
    r = load("description: ${EVIL}\nrepetitions: 2\n", env={"EVIL": "x\nrepetitions: 99\n[: {"})
    assert r.description == "x\nrepetitions: 99\n[: {" and r.repetitions == 2


def test_keys_are_not_interpolated():
    assert load("settings: {'${K}': 1}\n", env={"K": "v"}).settings == {"${K}": 1}


def test_secrets_are_captured_and_kept_out_of_text_and_errors():
    env = {"HF_TOKEN": "hf_abcdef", "DB_PASSWORD": "hunter22", "api_key": "k-1", "MODEL": "llama",
           "AUTH_HEADER": "", "ROOT_SECRET": "s3cr3t"}
    r = load("""\
        services:
          llm: {kind: vllm, hf_token: "${HF_TOKEN}", model: "${MODEL}", served_model_name: "${api_key}",
                dtype: "${AUTH_HEADER}"}
          db: {kind: postgres, database: "postgres://u:${DB_PASSWORD}@db/x", user: "${SOME_PASSWD:-dflt}"}
        """, env=env)
    assert r.secret_values == frozenset({"hf_abcdef", "hunter22", "k-1"})  # not MODEL, empty, or default
    assert r.services["llm"].settings["hf_token"] == "hf_abcdef"
    assert "hf_abcdef" not in r.text and "hunter22" not in r.text
    err = error("repetitions: ${ROOT_SECRET}\n", env=env)  # error messages reach CI logs too
    assert "s3cr3t" not in str(err) and str(err) == f"{SRC}: repetitions: '***' is not an integer >= 1"


@pytest.mark.parametrize(("name", "secret"), [
    ("OPENAI_API_KEY", True), ("hf_token", True), ("PGPASSWORD", True), ("REDIS_PASSWD", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("GOOGLE_CREDENTIALS", True), ("BASIC_AUTH", True),
    ("MODEL", False), ("PORT", False), ("HOST", False),
])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_load_recipe_reads_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HWBENCH_TEST_REPS", "4")
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nrepetitions: ${HWBENCH_TEST_REPS}\n")
    assert load_recipe(path).repetitions == 4


def test_interpolate_function():
    assert interpolate("a ${X} ${Y:-d} $${Z}", {"X": "1"}) == "a 1 d ${Z}"
    with pytest.raises(HwbenchInputError, match="environment variable Q is not set"):
        interpolate("${Q}", {})


@given(st.text().filter(lambda s: "$" not in s))
def test_interpolation_of_text_without_dollar_is_identity(text):
    assert interpolate(text, {}) == text


@given(st.text(alphabet=st.sampled_from("${}ab:-_ \n")))
def test_escape_round_trips(text):
    assert interpolate(escape(text), {}) == text


# ---------------------------------------------------------------------------------------- validate_cmd


def test_validate_cmd_ok_and_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(FULL)
    plain = tmp_path / "plain.yaml"
    plain.write_text("version: 1\nrepetitions: 1\nservices: {r: {kind: redis}}\nslo: {t: 'a < 1'}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nservices:\n  llm: {kind: vllm, backend: dokcer}\nrepetiton: 1\n")

    out = io.StringIO()
    assert validate_cmd.run([str(good), str(plain)], out=out) == 0
    assert out.getvalue().splitlines() == [
        f"OK {good} (2 services, 3 SLO rules, sweep: concurrency, model)",
        f"OK {plain} (1 service, 1 SLO rule, sweep: none)",
    ]

    out = io.StringIO()
    missing = tmp_path / "missing.yaml"
    assert validate_cmd.run([str(bad), str(good), str(missing)], out=out) == 1
    assert out.getvalue().splitlines() == [
        f"{bad}: services.llm.backend: 'dokcer' is not one of docker, process, external",
        f"{bad}: repetiton: unknown key, did you mean 'repetitions'?",
        f"OK {good} (2 services, 3 SLO rules, sweep: concurrency, model)",
        f"{missing}: recipe file not found (fix: {MISSING_FILE_FIX})",
    ]


def test_validate_cmd_defaults_to_stdout_and_needs_files(capsys):
    assert validate_cmd.run([]) == 1
    assert "no recipe files given" in capsys.readouterr().out
