"""Fast tests of the services stage that need no server: catalog, settings validation, endpoints, probes,
hints, the port registry, docker stats parsing, the external backend and the tiny GGUF writer."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.services import (
    Endpoint,
    ServiceKind,
    ServiceStartError,
    get_kind,
    install_exit_on_signals,
    kinds,
    register,
    start_service,
)
from pytest_hwbench.services.base import hint_for, tail_file
from pytest_hwbench.services.docker_backend import parse_docker_stats
from pytest_hwbench.services.probes import (
    CommandProbe,
    HttpProbe,
    NoProbe,
    State,
    TcpProbe,
    probe_from_setting,
)
from pytest_hwbench.services.state import Owner, PortRegistry, port_is_free
from tests.service_helpers import spec

CATALOG = {"vllm", "ollama", "llamacpp", "triton", "postgres", "redis", "s3", "qdrant", "chroma", "mlflow"}


def start(s, tmp_path: Path, **kw):
    return start_service(s, run_id="unit", log_dir=tmp_path / "logs", state_dir=tmp_path / "state", **kw)


# -- catalog and input validation ------------------------------------------------------------------------

def test_catalog_has_every_kind_with_working_defaults():
    cat = kinds()
    assert set(cat) >= CATALOG
    for name in CATALOG:
        kind = cat[name]
        assert kind.name == name and kind.port > 0 and kind.summary
        assert kind.image, f"{name} has no default image"
        assert kind.binary, f"{name} has no default binary"
        assert name in kind.describe()


def test_unknown_kind_lists_the_catalog(tmp_path):
    with pytest.raises(HwbenchInputError) as exc:
        start(spec("redsi", name="cache"), tmp_path, source="recipes/x.yaml")
    err = exc.value
    assert (err.file, err.field) == ("recipes/x.yaml", "services.cache.kind")
    assert "unknown service kind 'redsi'" in str(err)
    for name in CATALOG:
        assert name in err.fix


def test_unknown_setting_names_field_and_accepted_names(tmp_path):
    with pytest.raises(HwbenchInputError) as exc:
        start(spec("redis", "process", name="cache", imagee="x"), tmp_path, source="r.yaml")
    assert exc.value.field == "services.cache.imagee"
    assert "binary" in exc.value.fix and "maxmemory" in exc.value.fix
    assert "image" not in exc.value.fix.split(", ")  # image is a docker setting, not a process one


def test_required_setting_is_reported(tmp_path):
    with pytest.raises(HwbenchInputError) as exc:
        start(spec("vllm", "process", name="llm"), tmp_path)
    assert exc.value.field == "services.llm.model" and "needs 'model'" in str(exc.value)


def test_llamacpp_without_a_model_is_unavailable_naming_the_fix(tmp_path):
    """recipes/llamacpp.yaml with $HWBENCH_GGUF unset: a machine without a model skips, naming the variable."""
    with pytest.raises(ServiceUnavailable, match=r"HWBENCH_GGUF=.*hwbench models tiny"):
        start(spec("llamacpp", "process", name="llm", model=""), tmp_path)


def test_bad_backend_is_reported(tmp_path):
    with pytest.raises(HwbenchInputError, match="not one of docker, process, external"):
        start(spec("redis", "kubernetes"), tmp_path)


def test_missing_binary_is_unavailable_with_fix(tmp_path):
    with pytest.raises(ServiceUnavailable) as exc:
        start(spec("redis", "process", name="cache", binary="no-such-redis-server-xyz"), tmp_path)
    assert "'no-such-redis-server-xyz' was not found" in str(exc.value)
    assert "services.cache.binary" in str(exc.value)
    with pytest.raises(ServiceUnavailable, match="not an executable file"):
        start(spec("redis", "process", binary="/nonexistent/redis-server"), tmp_path)


def test_a_new_kind_is_one_registered_class():
    @register
    class Echo(ServiceKind):
        name = "unit-echo"
        summary = "test kind"
        port = 1

    assert isinstance(get_kind("unit-echo"), Echo)


# -- endpoint, probes, hints -----------------------------------------------------------------------------

def test_endpoint_round_trips_through_json():
    ep = Endpoint(host="127.0.0.1", port=5, url="redis://127.0.0.1:5/0", extra={"db": 0, "a": [1]}, name="c",
                  kind="redis")
    assert Endpoint.from_json(ep.to_json()) == ep
    assert Endpoint.from_dict(json.loads(json.dumps(ep.to_dict()))) == ep


def test_probe_settings():
    assert isinstance(probe_from_setting("none", field="f"), NoProbe)
    assert probe_from_setting({"http": "/x", "status": [200, 204]}, field="f") == HttpProbe(("/x",), (200, 204))
    assert probe_from_setting("/ready", field="f") == HttpProbe(("/ready",))
    assert probe_from_setting({"tcp": True, "send": "PING\r\n", "expect": "+PONG"}, field="f") == \
        TcpProbe(b"PING\r\n", b"+PONG")
    assert probe_from_setting({"command": "true {port}"}, field="f") == CommandProbe(("true", "{port}"))
    with pytest.raises(HwbenchInputError) as exc:
        probe_from_setting({"grpc": 1}, field="services.x.health", source="r.yaml")
    assert exc.value.field == "services.x.health" and "{http: /health}" in exc.value.fix


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):
        code = 200 if self.path == "/ok" else type(self).status
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"loading" if code != 200 else b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_http_probe_states(http_server):
    assert HttpProbe(("/ok",)).check("127.0.0.1", http_server).state is State.READY
    res = HttpProbe(("/health",)).check("127.0.0.1", http_server)
    assert res.state is State.ANSWERING and "503" in res.detail
    assert HttpProbe(("/health", "/ok")).check("127.0.0.1", http_server).state is State.READY
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert HttpProbe().check("127.0.0.1", free, timeout=0.5).state is State.DOWN
    assert CommandProbe(("true",)).check("h", 1).state is State.READY
    assert CommandProbe(("false",)).check("h", 1).state is State.DOWN


def test_hints_name_the_usual_causes():
    assert "port is already in use" in hint_for("bind: Address already in use")
    assert "GPU unavailable" in hint_for('could not select device driver "nvidia" with capabilities: [[gpu]]')
    assert "image is not available" in hint_for("pull access denied for foo")
    assert hint_for("all good") is None


def test_tail_file(tmp_path):
    p = tmp_path / "log"
    p.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_file(p, 3) == "line 97\nline 98\nline 99"
    assert tail_file(tmp_path / "missing") == ""


# -- external backend ------------------------------------------------------------------------------------

def test_external_backend_probes_and_starts_nothing(http_server, tmp_path):
    url = f"http://user:secret@127.0.0.1:{http_server}"
    svc = start(spec("mlflow", "external", name="track", url=url, health={"http": "/ok"}, extra={"k": 1}),
                tmp_path)
    assert (svc.endpoint.host, svc.endpoint.port, svc.endpoint.extra["k"]) == ("127.0.0.1", http_server, 1)
    assert "secret" not in json.dumps(svc.info) and svc.info["backend"] == "external"
    svc.check_alive()
    svc.stop()  # nothing to stop; must not fail
    svc.stop()


def test_external_health_failure_is_bounded(http_server, tmp_path):
    with pytest.raises(ServiceStartError) as exc:
        start(spec("vllm", "external", name="llm", url=f"http://127.0.0.1:{http_server}", startup_timeout=1),
              tmp_path)
    assert "did not pass its health check within 1s" in str(exc.value) and "503" in str(exc.value)


def test_external_endpoint_nobody_listens_on_is_unavailable_naming_the_fix(tmp_path):
    """A user-provided server that is not running is "not available here" (a skip, a failure in CI), at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"nothing listens at .*start the server, or set the recipe's url"):
        start(spec("qdrant", "external", name="qdrant", url=f"http://127.0.0.1:{port}", startup_timeout=30),
              tmp_path)
    assert time.monotonic() - t0 < 10  # classified, not waited out


def test_external_bad_url(tmp_path):
    with pytest.raises(HwbenchInputError) as exc:
        start(spec("redis", "external", name="c", url="localhost"), tmp_path)
    assert exc.value.field == "services.c.url"


# -- ports -----------------------------------------------------------------------------------------------

def _reserve_many(state_dir: str, n: int, queue) -> None:
    reg = PortRegistry(Path(state_dir))
    queue.put([reg.reserve("test") for _ in range(n)])


def test_port_registry_never_hands_out_a_port_twice_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(str(tmp_path), 20, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [port for _ in procs for port in queue.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert len(got) == 60
    # All three owners exited: their entries are stale and dropped; within one live owner no repeats either.
    reg = PortRegistry(tmp_path)
    mine = [reg.reserve("x") for _ in range(20)]
    assert len(set(mine)) == 20 and all(port_is_free(p) for p in mine)
    entries = json.loads((tmp_path / "ports.json").read_text())
    assert set(entries) == {str(p) for p in mine}
    reg.release(*mine)
    assert json.loads((tmp_path / "ports.json").read_text()) == {}


def test_ports_of_live_owners_are_skipped(tmp_path):
    reg = PortRegistry(tmp_path)
    first = reg.reserve("a")
    # The probe socket is closed, so the kernel may offer the port again: the registry must skip it.
    assert str(first) in json.loads((tmp_path / "ports.json").read_text())
    others = {reg.reserve("b") for _ in range(30)}
    assert first not in others


def test_port_is_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert not port_is_free(s.getsockname()[1])


def test_owner_identity():
    me = Owner.current()
    assert me.alive() and Owner.from_label(me.label()) == Owner(me.pid, round(me.start, 2), me.host)
    assert not Owner(pid=me.pid, start=me.start - 1000, host=me.host).alive()  # pid reused by another process
    assert Owner.from_label("garbage") is None


# -- docker stats, signals, GGUF -------------------------------------------------------------------------

def test_parse_docker_stats():
    s = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000, "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
         "memory_stats": {"usage": 5_000, "limit": 10_000, "stats": {"inactive_file": 1_000}},
         "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}},
         "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 7}, {"op": "Write", "value": 9}]},
         "pids_stats": {"current": 4}}
    out = parse_docker_stats(s)
    assert out["cpu_percent"] == pytest.approx(40.0)
    assert (out["mem_bytes"], out["net_rx_bytes"], out["net_tx_bytes"]) == (4_000, 10, 20)
    assert (out["blk_read_bytes"], out["blk_write_bytes"], out["pids"]) == (7, 9, 4)
    assert parse_docker_stats({})["cpu_percent"] == 0.0


def test_sigterm_becomes_system_exit():
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert signal.SIGTERM in install_exit_on_signals((signal.SIGTERM,))
        with pytest.raises(SystemExit) as exc:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
        assert exc.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old)


def test_tiny_gguf_has_the_documented_shape(tmp_path):
    gguf = pytest.importorskip("gguf", reason="pip install gguf")
    from pytest_hwbench.services.tiny_gguf import tiny_gguf

    path = tiny_gguf(tmp_path)
    assert tiny_gguf(tmp_path) == path  # reused
    reader = gguf.GGUFReader(path)
    fields = reader.fields

    def scalar(key):
        f = fields[key]
        return f.parts[f.data[0]][0]

    assert scalar("llama.embedding_length") == 64 and scalar("llama.block_count") == 2
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode() for i in fields["tokenizer.ggml.tokens"].data]
    assert len(tokens) == 259 and tokens[:4] == ["<unk>", "<s>", "</s>", "<0x00>"] and tokens[-1] == "<0xFF>"
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names and len(names) == 21


def test_wait_ready_tells_loading_apart_from_starting(tmp_path):
    """An engine that answers 503 while its model loads: first answer → ready is the model load time."""
    from pytest_hwbench.services.running import wait_ready

    class Loading(_Handler):
        ready_at = 0.0

        def do_GET(self):
            import time

            code = 200 if time.monotonic() >= type(self).ready_at else 503
            self.send_response(code)
            self.end_headers()

    import time

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loading)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        Loading.ready_at = time.monotonic() + 0.8
        ready_s, first_answer_s = wait_ready("llm", HttpProbe(), "127.0.0.1", srv.server_address[1], timeout=10,
                                             dead_reason=lambda: None, log_path=None, poll=0.05)
        assert first_answer_s is not None and first_answer_s < 0.5
        assert 0.5 < ready_s - first_answer_s < 5
        # Already ready at the first answer: nothing to tell apart.
        assert wait_ready("llm", HttpProbe(), "127.0.0.1", srv.server_address[1], timeout=10,
                          dead_reason=lambda: None, log_path=None)[1] is None
    finally:
        srv.shutdown()
        srv.server_close()


class _FakeOllama(http.server.BaseHTTPRequestHandler):
    """Just enough of Ollama's API to check that a model is pulled, then loaded, each timed on its own."""

    calls: ClassVar[list] = []

    def do_GET(self):
        self.send_response(200 if self.path == "/api/version" else 404)
        self.end_headers()
        self.wfile.write(b'{"version": "0.0-fake"}')

    def do_POST(self):
        import time

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append((self.path, body))
        time.sleep(0.3 if self.path == "/api/pull" else 0.2)
        answer = {"status": "success"} if self.path == "/api/pull" else {"done": True}
        if body.get("model") == "missing:tag":
            answer = {"error": "pull model manifest: file does not exist"}
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps(answer).encode())

    def log_message(self, *args):
        pass


def test_ollama_model_is_pulled_then_loaded_and_both_are_timed(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOllama)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        svc = start(spec("ollama", "external", name="llm", url=url, model="tiny:1b", keep_alive="5m"), tmp_path)
        assert [c[0] for c in _FakeOllama.calls] == ["/api/pull", "/api/generate"]
        assert _FakeOllama.calls[1][1] == {"model": "tiny:1b", "keep_alive": "5m", "stream": False}
        assert svc.info["model"] == "tiny:1b"
        assert 0.25 < svc.info["model_pull_s"] < 5 and 0.15 < svc.info["model_load_s"] < 5
        assert svc.endpoint.extra["openai_base_url"] == f"{url}/v1"
        with pytest.raises(ServiceStartError, match="pulling model 'missing:tag' failed: pull model manifest"):
            start(spec("ollama", "external", name="llm", url=url, model="missing:tag"), tmp_path)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("backend", ["process", "docker"])
def test_every_kind_builds_its_command_line(backend, tmp_path):
    """Kinds whose servers are not installed here still build argv/env/volumes/probe/endpoint cleanly."""
    from pytest_hwbench.services.base import StartContext

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = {"llamacpp": {"model": str(model), "ctx_size": 512}, "vllm": {"model": "org/m", "dtype": "half"},
                "triton": {"model_repository": str(repo)},
                "generic": {"binary": "x"} if backend == "process" else {"image": "x"},
                "postgres": {"password": "pw", "conf": {"work_mem": "4MB"}}, "ollama": {"models_dir": str(tmp_path)},
                "s3": {"access_key": "a", "secret_key": "b"}, "qdrant": {"api_key": "k"}}
    for name, kind in kinds().items():
        if name.startswith("unit-"):
            continue
        s = kind.validate("svc", backend, dict(settings.get(name, {})))
        port = 41000 if backend == "process" else kind.port
        ports = {p: 41001 + i for i, p in enumerate(kind.extra_ports)} if backend == "process" \
            else dict(kind.extra_ports)
        ctx = StartContext(name="svc", kind=kind, backend=backend, settings=s, host="127.0.0.1", port=port,
                           ports=ports, work_dir=tmp_path, log_dir=tmp_path, run_id="r")
        if backend == "process":
            argv = kind.process_args(ctx, "/bin/x")
            env = kind.process_env(ctx)
            if name not in ("generic", "ollama", "qdrant"):  # those take the port from env or the recipe's args
                assert "41000" in " ".join(argv), (name, argv)
        else:
            argv = kind.container_command(ctx) or []
            env = kind.container_env(ctx)
            kind.container_volumes(ctx)
        assert all(isinstance(a, str) for a in argv) and all(isinstance(v, str) for v in env.values())
        assert kind.probe(ctx).description
        ep = kind.endpoint(ctx, "127.0.0.1", 5555, {p: 5556 for p in kind.extra_ports})
        assert Endpoint.from_json(ep.to_json()) == ep and ep.kind == name and ep.port == 5555
