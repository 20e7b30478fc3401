"""Machine fingerprint: what this box is, and the testbed slug that keys its baselines.

Why it exists (docs/verdicts.md): a benchmark number means nothing without the machine it came from.
The fingerprint serves two purposes:

* **Keying.** Baselines are stored per *machine class* (the testbed), not per host, so that a fleet of
  identical boxes shares one committed baseline and each box can be compared against it (the "silicon
  lottery": one of eight identical servers being 7 % slower is a finding, not noise to average away).
  :func:`derive_testbed` therefore uses only what defines the class (CPU model, core count, memory size,
  GPU models and count) and never the hostname, serial numbers or UUIDs.
* **Explaining.** Everything else that can move a number across an upgrade (kernel, driver, BIOS, Python and
  package versions, git state, container) is recorded so a verdict can print the environment diff against
  the baseline's fingerprint; that diff is what an upgrade gate is about.

Collection never raises and never needs privileges: unreadable files and missing tools become absent
fields, because a fingerprint that fails would block the benchmark it is meant to describe. The result
holds plain JSON types only, so it goes into run manifests, baselines and MLflow unchanged.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import math
import os
import platform
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, cast

from pytest_hwbench.measure.gpu import gpu_inventory
from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.recipe.specs import default_of

__all__ = [
    "FINGERPRINT_VERSION", "clear_fingerprint_cache", "collect_fingerprint", "cpu_slug", "derive_testbed",
    "memory_class_gib",
]

#: Bumped when the meaning of a field changes, so a baseline's stored fingerprint can be read correctly.
FINGERPRINT_VERSION = 1

#: Distributions whose versions can move a benchmark result; only installed ones are recorded.
_PACKAGES: tuple[str, ...] = (
    "pytest-hwbench", "pytest", "pytest-xdist", "numpy", "scipy", "mlflow", "pyyaml", "psutil",
    "nvidia-ml-py", "aiohttp", "filelock", "docker", "redis", "psycopg", "boto3", "qdrant-client",
    "chromadb", "openai", "torch", "vllm", "transformers",
)

#: /sys/class/dmi/id files worth recording (firmware/board identity; all world-readable on Linux).
#: Serial numbers and UUIDs are deliberately left out: they identify a host, not a machine class.
_DMI_FIELDS: tuple[str, ...] = (
    "bios_vendor", "bios_version", "bios_date", "board_vendor", "board_name", "product_name", "sys_vendor",
)

#: ARM /proc/cpuinfo carries no model name, only implementer and part numbers (what lscpu maps too).
_ARM_PARTS: dict[tuple[str, str], str] = {
    ("0x41", "0xd0c"): "ARM Neoverse-N1", ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd49"): "ARM Neoverse-N2", ("0x41", "0xd4f"): "ARM Neoverse-V2",
    ("0x41", "0xd8e"): "ARM Neoverse-N3", ("0x41", "0xd84"): "ARM Neoverse-V3",
    ("0x41", "0xd08"): "ARM Cortex-A72", ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd03"): "ARM Cortex-A53", ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0xc0", "0xac3"): "Ampere AmpereOne", ("0x50", "0x000"): "APM X-Gene",
}

_TESTBED_MAX_LEN = 80


# --------------------------------------------------------------------------------------------- helpers

def _read_text(path: str | Path) -> str | None:
    """File contents stripped, or None when absent/unreadable (DMI files may be root-only)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except (OSError, ValueError):
        return None


def _run(args: list[str], cwd: Path) -> str | None:
    """stdout of a short command, or None when it fails, is missing or hangs (bounded: 5 s)."""
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=5, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo as a dict (all blocks are the same on servers we target)."""
    text = _read_text("/proc/cpuinfo") or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def _cpu_model(info: dict[str, str]) -> str:
    """Marketing name of the CPU: x86 "model name", ARM implementer/part table, else what Python knows."""
    if info.get("model name"):
        return info["model name"]
    impl, part = info.get("cpu implementer", "").lower(), info.get("cpu part", "").lower()
    if impl and part:
        return _ARM_PARTS.get((impl, part), f"ARM implementer {impl} part {part}")
    for key in ("hardware", "cpu", "processor"):  # older ARM / POWER kernels
        value = info.get(key)
        if value and not value.isdigit():
            return value
    if platform.system() == "Darwin":
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"], Path.cwd())
        if brand and brand.strip():
            return brand.strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu() -> dict[str, Any]:
    import psutil

    info = _cpuinfo()
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    max_mhz: float | None = None
    khz = _read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.isdigit():
        max_mhz = round(int(khz) / 1000.0, 1)
    else:
        try:
            freq = psutil.cpu_freq()
            if freq is not None and freq.max:
                max_mhz = round(float(freq.max), 1)
        except Exception:
            pass
    return {
        "model": _cpu_model(info),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        # usable < logical means a cpuset/affinity limit: numbers are not comparable to a full box
        "usable_cores": usable,
        "max_mhz": max_mhz,
        "hypervisor": "hypervisor" in info.get("flags", "").split(),
    }


def _memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        return None


def _os_release() -> dict[str, Any]:
    fields: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read_text(path)
        if text is None:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                fields[key.strip()] = value.strip().strip('"').strip("'")
        break
    if fields:
        return {"name": fields.get("NAME"), "version": fields.get("VERSION_ID") or fields.get("VERSION"),
                "id": fields.get("ID"), "pretty_name": fields.get("PRETTY_NAME")}
    return {"name": platform.system(), "version": platform.version(), "id": None, "pretty_name": None}


def _gpu() -> dict[str, Any]:
    inv = gpu_inventory()
    return {
        "available": inv.available,
        "reason": inv.reason,
        "count": len(inv.gpus) if inv.available else 0,
        "names": [g.get("name") for g in inv.gpus if g.get("name")],
        "driver_version": inv.driver_version,
        "cuda_driver_version": inv.cuda_driver_version,
        "gpus": [dict(g) for g in inv.gpus],
    }


def _dmi() -> dict[str, str]:
    base = Path("/sys/class/dmi/id")
    out: dict[str, str] = {}
    for name in _DMI_FIELDS:
        value = _read_text(base / name)
        if value:
            out[name] = value
    return out


def _git(root: Path) -> dict[str, Any] | None:
    """Commit, dirty flag and branch of the repo containing ``root``; None when not a repo or no git.

    Untracked (non-ignored) files count as dirty: a new benchmark file changes what runs.
    """
    if _run(["git", "rev-parse", "--is-inside-work-tree"], root) is None:
        return None
    commit = _run(["git", "rev-parse", "HEAD"], root)
    status = _run(["git", "status", "--porcelain"], root)
    branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], root)
    branch = branch.strip() if branch else None
    return {
        "commit": commit.strip() if commit else None,  # None: repo without commits yet
        "dirty": bool(status.strip()) if status is not None else None,
        "branch": None if branch in (None, "", "HEAD") else branch,  # HEAD: detached checkout
    }


def _packages() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:
            continue
    return out


def _container() -> dict[str, Any]:
    """Whether we run in a container and which kind; numbers from a container carry its cgroup limits."""
    runtime: str | None = None
    if os.path.exists("/.dockerenv"):
        runtime = "docker"
    elif os.path.exists("/run/.containerenv"):
        runtime = "podman"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        runtime = "kubernetes"
    else:
        cgroup = _read_text("/proc/1/cgroup") or ""
        for marker, name in (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"),
                             ("libpod", "podman"), ("lxc", "lxc")):
            if marker in cgroup:
                runtime = name
                break
    return {"in_container": runtime is not None, "runtime": runtime}


# ------------------------------------------------------------------------------------------ public API

@functools.lru_cache(maxsize=16)
def _collect(root: Path) -> dict[str, Any]:
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "hostname": socket.gethostname(),
        "cpu": _cpu(),
        "memory_gib": _memory_gib(),
        "os": _os_release(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "gpu": _gpu(),
        "dmi": _dmi(),
        "git": _git(root),
        "packages": _packages(),
        "container": _container(),
    }


def collect_fingerprint(root: Path | None = None) -> dict[str, Any]:
    """Fingerprint of this machine and of the git checkout at ``root`` (default: the current directory).

    Collected once per process and root (it spawns ``git`` and initialises NVML, and does not change
    during a session); each call returns a deep copy so a caller editing it cannot corrupt the cache.
    """
    resolved = Path(root if root is not None else Path.cwd()).resolve()
    return copy.deepcopy(_collect(resolved))


def clear_fingerprint_cache() -> None:
    """Forget cached fingerprints (tests; or after changing the checkout within one process)."""
    _collect.cache_clear()


# Words that name no part of the machine class: marketing marks, "CPU", the base clock (the same model
# always has the same base clock, and "@ 2.10GHz" is absent from some kernels' model strings).
_CPU_NOISE = re.compile(
    r"\((?:r|tm|c)\)|\b(?:cpu|processor|apu)\b|@\s*[\d.]+\s*[gm]hz|\b[\d.]+\s*[gm]hz\b"
    r"|\b\w+-cores?\b|\bwith\s+radeon\b.*$|\bradeon\s+graphics\b",
    re.IGNORECASE,
)


def _slugify(text: str) -> str:
    text = text.lower().replace("+", "plus")
    text = re.sub(r"[^a-z0-9]+", "-", text)
    return text.strip("-")


def cpu_slug(model: str) -> str:
    """CPU model string as a slug: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz" -> "intel-xeon-gold-6338"."""
    slug = _slugify(_CPU_NOISE.sub(" ", model or ""))
    return slug or "unknown-cpu"


def memory_class_gib(total_gib: float | None) -> int:
    """Memory size for the testbed slug: the OS total rounded *up* to 1/8 of its power-of-two octave.

    The OS reports installed memory minus firmware/kernel reservations (512 GiB shows as ~503 GiB), and
    those reservations move with kernel, firmware and driver upgrades: exactly the changes a baseline is
    meant to gate, so plain rounding would flip the slug (and orphan the baseline) right when it matters.
    Installed sizes are multiples of that granularity (16, 24, 48, 96, 480, 512, 576, 768, 1152, 1536 ...)
    and reservations are far below it, so rounding up recovers the installed size and stays put across
    upgrades. Granularity is at least 1 GiB. Odd VM sizes may land on the next step (a 100 GiB VM reads
    104); the value names a class, not an exact byte count.
    """
    if not total_gib or total_gib <= 0:
        return 0
    step = max(1.0, 2.0 ** (math.floor(math.log2(total_gib)) - 3))
    return int(math.ceil(round(total_gib / step, 6)) * step)


def _gpu_slug(fp: dict[str, Any]) -> str:
    gpu = fp.get("gpu") or {}
    names = [n for n in (gpu.get("names") or []) if n]
    if not names:
        return ""
    counts: dict[str, int] = {}
    for name in names:
        key = _slugify(re.sub(r"\((?:r|tm)\)", " ", name, flags=re.IGNORECASE))
        counts[key] = counts.get(key, 0) + 1
    return "-".join(f"{n}x-{key}" for key, n in sorted(counts.items()))


def derive_testbed(fp: dict[str, Any]) -> str:
    """Stable machine-class slug, e.g. ``intel-xeon-gold-6338-64c-512g-8x-nvidia-h100-80gb-hbm3``.

    Built from CPU model, logical core count, memory class (see :func:`memory_class_gib`) and GPU models
    with counts, so identical machines share a slug (and a baseline) while the hostname, serials and
    firmware do not enter it: firmware is what an upgrade changes, and the point is to compare before and
    after on the same class. Only ``[a-z0-9-]``; at most 80 characters (longer slugs are cut and given a
    short hash of the full slug so two long ones cannot collide). Tolerates partial fingerprints (e.g.
    one stored with an old baseline).
    """
    cpu = fp.get("cpu") or {}
    parts = [cpu_slug(str(cpu.get("model") or ""))]
    cores = cpu.get("logical_cores")
    if cores:
        parts.append(f"{int(cores)}c")
    parts.append(f"{memory_class_gib(fp.get('memory_gib'))}g")
    gpu = _gpu_slug(fp)
    if gpu:
        parts.append(gpu)
    slug = re.sub(r"-+", "-", "-".join(parts)).strip("-")
    if len(slug) > _TESTBED_MAX_LEN:
        digest = hashlib.sha1(slug.encode()).hexdigest()[:8]
        slug = slug[: _TESTBED_MAX_LEN - 9].rstrip("-") + "-" + digest
    return slug


# ------------------------------------------------------------------------------------ run conditions

#: Environment variables that set how many threads a BLAS / OpenMP library uses.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
#: How much the machine's load (fraction of all CPUs busy with other work) may differ from the stored
#: sessions' range before the verdict says the conditions differ.
LOAD_MARGIN = 0.25
#: Share of all CPUs used by other processes during the trials from which the machine counts as contended
#: (above one busy core of two, e.g. a sibling xdist worker):
#: a CPU-bound benchmark on such a machine can lose anything from 10 % to 90 % from one session to the next
#: (measured on a shared 2-core box), so neither a slowdown nor a baseline taken there is evidence.
#: Declared once, as the recipe's ``baseline.contended_cpu_share``; this is its default.
CONTENDED: float = default_of(BaselinePolicy, "contended_cpu_share")


@functools.cache
def logical_cpus() -> int:
    """Logical CPUs of this machine, read once per process: ``os.cpu_count()`` reads a /sys file each call
    (tens of µs), and per measuring test that added up (issue #14)."""
    return os.cpu_count() or 1


_PROC_STAT: list[int] = []  # a descriptor of /proc/stat, opened at the first reading and kept


def _proc_stat_busy() -> float | None:
    """The busy seconds from the first line of /proc/stat, read with ``pread`` on a descriptor kept open:
    ~6 µs, where ``psutil.cpu_times()`` opens the file and parses every line of it (~17 µs, per measuring
    test; issue #14). None where there is no /proc/stat (the caller asks psutil then)."""
    try:
        if not _PROC_STAT:
            _PROC_STAT.append(os.open("/proc/stat", os.O_RDONLY))
        fields = os.pread(_PROC_STAT[0], 256, 0).split(b"\n", 1)[0].split()
        if len(fields) < 9 or fields[0] != b"cpu":
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / _CLK_TCK
    except (OSError, ValueError):
        return None


try:
    _CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):  # not a POSIX system: psutil answers instead
    _CLK_TCK = 100.0


class LoadMeter:
    """CPU time the rest of the machine used while a test ran, as a fraction of all CPUs.

    System-wide busy time minus this process's own (threads and reaped children) over the window since
    ``__init__``. On a shared machine a whole session shifts when a neighbour starts a build; this number
    is how the verdict tells such a session from a regression of the system under test."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._own0 = self._own()

    @staticmethod
    def _busy() -> float:
        """System-wide busy CPU seconds: user, nice, system, irq, softirq, steal (not idle or iowait; guest
        time is already inside user and nice)."""
        fast = _proc_stat_busy()
        if fast is not None:
            return fast
        import psutil

        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0)
                     - getattr(t, "guest_nice", 0.0))

    @staticmethod
    def _own() -> float:
        # os.times() is the times(2) call: the same four counters psutil reads from /proc/self/stat, without
        # building a psutil.Process and parsing /proc (0.1-0.3 ms per measuring test on a busy machine).
        t = os.times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def external_fraction(self) -> float | None:
        wall = time.monotonic() - self._t0
        cpus = logical_cpus()
        if wall <= 0.05:
            return None
        try:
            other = (self._busy() - self._busy0) - (self._own() - self._own0)
        except Exception:  # the process table can vanish under us in a container; no number then
            return None
        return round(min(max(other / (wall * cpus), 0.0), 1.0), 2)


_GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
#: Whether the machine has a cpufreq governor file, checked once per process: a VM or container without
#: cpufreq (most CI machines) otherwise paid a failed open per measuring test. The governor itself is still
#: read per test where it exists (it can be switched mid-session).
_HAS_GOVERNOR = os.path.exists(_GOVERNOR)


def run_conditions(load_window_s: float = 0.0) -> dict[str, Any]:
    """The conditions one test ran under, which change its numbers without any change to the system under
    test: xdist worker count, BLAS/OpenMP thread settings, CPU frequency governor, and the fraction of all
    CPUs busy in a short window at test start (before the test's own work). Part of the environment a
    baseline is saved and compared in."""
    import psutil

    blas = {k: os.environ[k] for k in BLAS_THREAD_VARS if k in os.environ}
    governor = _read_text(_GOVERNOR) if _HAS_GOVERNOR else None
    try:
        if load_window_s > 0:
            load = round(psutil.cpu_percent(interval=load_window_s) / 100.0, 2)
        else:  # non-blocking (1-minute load average): a 0.1 s window per test was most of the plugin's cost
            load = round(min(os.getloadavg()[0] / logical_cpus(), 1.0), 2)
    except Exception:  # a missing /proc/stat must not fail a test
        load = None
    return {"xdist_workers": int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1),
            "blas_threads": blas or "default", "cpu_governor": governor.strip() if governor else None,
            "load_at_start": load}


def conditions_differ(stored: list[dict[str, Any]], current: dict[str, Any], *,
                      contended: float | None = CONTENDED) -> list[str]:
    """Human lines for each run condition that differs from the stored sessions' (empty when alike).

    Discrete conditions are compared with the newest stored session; the load (at start, and used by other
    processes during the trials) counts as different only when it lies more than ``LOAD_MARGIN`` outside
    the range the stored sessions saw. ``contended`` is the recipe's ``baseline.contended_cpu_share``:
    None or 1 (or more) never calls the machine contended."""
    if not stored or not current:
        return []
    out = []
    latest = stored[-1]
    names = {"xdist_workers": "xdist workers", "blas_threads": "BLAS threads", "cpu_governor": "CPU governor"}
    for key, label in names.items():
        if key in latest and key in current and latest[key] != current[key]:
            out.append(f"{label} {latest[key]} at baseline, {current[key]} now")
    for key, label in (("load_at_start", "machine load at test start"),
                       ("load_other", "CPU used by other processes during the trials")):
        loads = cast("list[float]", [s.get(key) for s in stored if isinstance(s.get(key), (int, float))])
        now = current.get(key)
        if loads and isinstance(now, (int, float)) and not (
                min(loads) - LOAD_MARGIN <= now <= max(loads) + LOAD_MARGIN):
            span = f"{min(loads):.0%}" if len(loads) == 1 else f"{min(loads):.0%}-{max(loads):.0%}"
            out.append(f"{label}: {span} of all CPUs at baseline, {now:.0%} now")
    busy_now = current.get("load_other")
    busy_then = cast("list[float]",
                     [s.get("load_other") for s in stored if isinstance(s.get("load_other"), (int, float))])
    if contended is None or contended >= 1:
        return out
    if isinstance(busy_now, (int, float)) and busy_now >= contended:
        out.append(f"the machine was contended: other processes used {busy_now:.0%} of all CPUs during "
                   "the trials")
    elif busy_then and max(busy_then) >= contended:
        out.append(f"the baseline was measured on a contended machine (other processes used up to "
                   f"{max(busy_then):.0%} of all CPUs); re-save it on a quieter machine")
    return out
