"""Children restore default signal handling (issue #9, item 9): a test process started in the background
ignores SIGINT, and a service it starts must still stop on SIGINT/SIGTERM instead of hanging CI."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.services.base import restore_default_signals


def test_child_of_a_process_that_ignores_sigint_stops_on_sigint() -> None:
    code = ("import signal, subprocess, sys\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from pytest_hwbench.services.base import restore_default_signals\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
            "                         preexec_fn=restore_default_signals)\n"
            "import time; time.sleep(0.5)\n"
            "child.send_signal(signal.SIGINT)\n"
            "print(child.wait(timeout=20))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          preexec_fn=restore_default_signals)
    assert done.stdout.strip() == str(-signal.SIGINT), done.stdout + done.stderr


def test_restore_default_signals_resets_ignored_ones() -> None:
    sigs = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGPIPE")]
    saved = {s: signal.getsignal(s) for s in sigs}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        restore_default_signals()
        assert all(signal.getsignal(s) is signal.SIG_DFL for s in sigs)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------- every kind of child, end to end
# A test process started in the background (``pytest ... &`` in a CI script) ignores SIGINT. Each kind of
# child this package starts must not inherit that: its kernel signal mask (/proc/<pid>/status, SigIgn)
# shows SIGINT not ignored even though its parent ignores it.


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def ignores_sigint(status: str) -> bool:
    """Whether a /proc/<pid>/status text says the process ignores SIGINT."""
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(mask & (1 << (signal.SIGINT - 1)))


def test_the_check_sees_an_ignored_sigint() -> None:
    with sigint_ignored():
        assert ignores_sigint(Path("/proc/self/status").read_text())
    assert not ignores_sigint(Path("/proc/self/status").read_text())


def test_hardware_tool_does_not_inherit_an_ignored_sigint() -> None:
    from pytest_hwbench.workloads.hardware.runner import run_tool

    with sigint_ignored():
        run = run_tool("status", ["cat", "/proc/self/status"], timeout=60)
    assert not ignores_sigint(run.stdout)


@pytest.mark.service
def test_process_service_does_not_inherit_an_ignored_sigint(tmp_path: Path) -> None:
    from pytest_hwbench.services import ServiceSet
    from tests.service_helpers import need_binary, spec

    need_binary("redis-server", "apt-get install redis-server")
    with ServiceSet(log_dir=tmp_path / "logs", state_dir=tmp_path / "state", handle_signals=False) as services:
        with sigint_ignored():
            svc = services.start(spec("redis"))
        pid = svc.proc.pid  # type: ignore[attr-defined]
        assert not ignores_sigint(Path(f"/proc/{pid}/status").read_text())


@pytest.mark.service
def test_reference_server_does_not_inherit_an_ignored_sigint() -> None:
    from pytest_hwbench.reference_server import ReferenceServerProcess

    with sigint_ignored():
        server = ReferenceServerProcess(precise=False)
        server.start()
    try:
        assert server._proc is not None
        assert not ignores_sigint(Path(f"/proc/{server._proc.pid}/status").read_text())
    finally:
        server.stop()


class SigintProbe:
    """A load client factory (pickled to a spawned worker) that fails at once, naming the worker's SIGINT
    handler: the parent's error message then carries it."""

    async def __call__(self) -> Any:
        handler = signal.getsignal(signal.SIGINT)
        raise RuntimeError(f"SIGINT handler: {getattr(handler, '__name__', handler)}")


@pytest.mark.slow
def test_load_worker_does_not_inherit_an_ignored_sigint() -> None:
    from pytest_hwbench.errors import HwbenchError
    from pytest_hwbench.workloads.engine import LoadSpec
    from pytest_hwbench.workloads.multiproc import run_multiprocess

    with sigint_ignored(), pytest.raises(HwbenchError) as err:
        run_multiprocess(LoadSpec.closed(1, requests=1), SigintProbe(), workers=1, precise=False)
    assert "SIGINT handler: default_int_handler" in str(err.value), str(err.value)
