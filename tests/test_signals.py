"""Children restore default signal handling (issue #9, item 9): a test process started in the background
ignores SIGINT, and a service it starts must still stop on SIGINT/SIGTERM instead of hanging CI."""

from __future__ import annotations

import signal
import subprocess
import sys

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
