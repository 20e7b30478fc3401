"""Run a hardware tool as a subprocess, reproducibly, and say precisely what to install when it is missing.

Why a runner of its own: the figures of llama-bench, 7-Zip, STREAM and fio are only worth something when a
reader can re-run the exact command and get the same kind of number, and when a tool upgrade shows up in the
baseline's environment diff. So every run keeps its argv (as a shell-quoted line too), its exit status, its
wall time and the tool's version string; the benchmark puts them in ``hwbench.extra["tools"]`` and the tool
version into the environment a baseline is saved and compared in.

A tool that is not installed is a skip naming the Debian package or the build script, and a failure when
``HWBENCH_FAIL_ON_UNAVAILABLE=1`` (CI), through the same :func:`~pytest_hwbench.service_hub.unavailable` the
services use. A tool that runs and fails is an error with its last output lines, never a skip.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_hwbench.errors import HwbenchError, ServiceUnavailable
from pytest_hwbench.services.base import restore_default_signals

#: Output lines kept in a failure message: enough to see the tool's own complaint.
TAIL_LINES = 15


class ToolFailed(HwbenchError):
    """The tool ran but exited non-zero, timed out, or printed nothing we can parse."""


@dataclass(frozen=True)
class Tool:
    """A located tool: its name, absolute path and version line (recorded with every measurement)."""

    name: str
    path: str
    version: str


@dataclass
class ToolRun:
    """One finished invocation: what ran, how long, and what it printed."""

    tool: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The command line to paste into a shell to reproduce this run (with its environment overrides)."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.argv)

    def record(self) -> dict[str, Any]:
        """Plain JSON for ``hwbench.extra``: argv, shell line, version, exit status, seconds."""
        out = asdict(self)
        del out["stdout"], out["stderr"]
        out["command"] = self.command
        return out

    def tail(self) -> str:
        lines = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(lines[-TAIL_LINES:])


def cache_dir() -> str:
    """Where the project caches what it builds (``$HWBENCH_CACHE``, default ``~/.cache/hwbench``)."""
    return os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")


def find_tool(names: Sequence[str], *, install: str, patterns: Sequence[str] = ()) -> str:
    """Absolute path of the first of ``names`` on PATH, else of the newest match of ``patterns`` (globs).

    Raises :class:`ServiceUnavailable` whose text says what to install (``install``), e.g.
    ``7-Zip not found (7zz, 7z): apt-get install 7zip``.
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return os.path.abspath(found)
    for pattern in patterns:
        hits = sorted((p for p in glob.glob(pattern) if os.access(p, os.X_OK)), key=os.path.getmtime)
        if hits:
            return hits[-1]
    raise ServiceUnavailable(f"{' / '.join(names)} not found on PATH: {install}")


def _child_setup() -> None:
    # Children restore default signal handling (pytest/xdist, or a background start, may have changed it).
    restore_default_signals()


def run_tool(tool: str, argv: Sequence[str], *, timeout: float, version: str = "", cwd: str | None = None,
             env: dict[str, str] | None = None, check: bool = True) -> ToolRun:
    """Run ``argv`` to completion (in its own process group, killed whole on timeout) and return the run.

    With ``check`` a non-zero exit raises :class:`ToolFailed` with the command line and the output's tail.
    """
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=full_env, start_new_session=True, preexec_fn=_child_setup)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        run = ToolRun(tool, list(argv), -9, stdout, stderr, time.perf_counter() - t0, version, env or {})
        raise ToolFailed(f"{tool} did not finish within {timeout:.0f}s: {run.command}\n{run.tail()}") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    run = ToolRun(tool, list(argv), proc.returncode, stdout, stderr, time.perf_counter() - t0, version, env or {})
    if check and run.returncode != 0:
        raise ToolFailed(f"{tool} exited with status {run.returncode}: {run.command}\n{run.tail()}")
    return run


def version_of(argv: Sequence[str], *, pick: str = "", timeout: float = 30.0) -> str:
    """First non-empty output line of a version command (or the first line containing ``pick``)."""
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_child_setup, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        line = line.strip()
        if line and (not pick or pick in line):
            return line
    return "unknown"


def note_run(hwbench: Any, run: ToolRun, **extra: Any) -> None:
    """Keep a run's reproducible record in ``hwbench.extra["tools"][tool]`` (the last run of each trial set)
    and its version in ``hwbench.extra["tool_versions"]``, which the session adds to the environment."""
    hwbench.extra.setdefault("tools", {})[run.tool] = {**run.record(), **extra}
    hwbench.extra.setdefault("tool_versions", {})[run.tool] = run.version


def require(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a tool finder, turning :class:`ServiceUnavailable` into the standard skip (a failure in CI)."""
    from pytest_hwbench.service_hub import unavailable

    try:
        return fn(*args, **kwargs)
    except ServiceUnavailable as err:
        unavailable(str(err))
        raise  # unreachable: unavailable() always raises
