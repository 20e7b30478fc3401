"""Machine fingerprint and testbed slug: fields, JSON-ness, slug stability, GPU degradation, git state.

The slug keys committed baselines, so its stability is tested with hand-written fingerprints of machines
we do not have (Intel/AMD/ARM servers, GPU boxes): a change to the slug rules silently orphans every
baseline, and these tests are what makes such a change visible.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pytest_hwbench.measure.fingerprint import (
    clear_fingerprint_cache,
    collect_fingerprint,
    cpu_slug,
    derive_testbed,
    memory_class_gib,
)
from pytest_hwbench.measure.gpu import gpu_inventory, gpu_skip_reason

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test sees a freshly collected fingerprint (the cache is per process)."""
    clear_fingerprint_cache()
    yield
    clear_fingerprint_cache()


# ------------------------------------------------------------------------------------------ fields

def test_fields_present_and_typed(tmp_path: Path) -> None:
    fp = collect_fingerprint(tmp_path)
    assert isinstance(fp["hostname"], str) and fp["hostname"]
    cpu = fp["cpu"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert isinstance(cpu["logical_cores"], int) and cpu["logical_cores"] >= 1
    assert cpu["physical_cores"] is None or isinstance(cpu["physical_cores"], int)
    assert cpu["max_mhz"] is None or isinstance(cpu["max_mhz"], float)
    assert isinstance(fp["memory_gib"], float) and fp["memory_gib"] > 0
    assert fp["memory_gib"] == round(fp["memory_gib"], 1)
    assert set(fp["os"]) >= {"name", "version"}
    if sys.platform.startswith("linux"):
        assert fp["os"]["name"]
    assert isinstance(fp["kernel"], str) and fp["kernel"]
    assert isinstance(fp["arch"], str) and fp["arch"]
    assert set(fp["python"]) == {"version", "implementation"}
    assert fp["python"]["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert set(fp["gpu"]) >= {"available", "count", "names", "driver_version"}
    assert isinstance(fp["gpu"]["count"], int)
    assert isinstance(fp["dmi"], dict)
    assert all(isinstance(v, str) for v in fp["dmi"].values())
    assert fp["git"] is None  # tmp_path is not a repository
    assert isinstance(fp["packages"], dict)
    assert "pytest" in fp["packages"] and "numpy" in fp["packages"]
    assert "scipy-not-a-real-package" not in fp["packages"]
    assert isinstance(fp["container"]["in_container"], bool)


def test_json_serialisable_and_plain(tmp_path: Path) -> None:
    fp = collect_fingerprint(tmp_path)
    text = json.dumps(fp, allow_nan=False, sort_keys=True)
    assert json.loads(text) == fp


def test_cached_per_root_and_copied(tmp_path: Path) -> None:
    first = collect_fingerprint(tmp_path)
    first["cpu"]["model"] = "mutated by a caller"
    second = collect_fingerprint(tmp_path)
    assert second["cpu"]["model"] != "mutated by a caller"  # cache is not shared by reference
    assert collect_fingerprint(tmp_path) == second


# ---------------------------------------------------------------------------------------- cpu slug

@pytest.mark.parametrize(("model", "slug"), [
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "intel-xeon-gold-6338"),
    ("Intel(R) Xeon(R) Platinum 8480+", "intel-xeon-platinum-8480plus"),
    ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "intel-xeon-e5-2686-v4"),
    ("13th Gen Intel(R) Core(TM) i9-13900K", "13th-gen-intel-core-i9-13900k"),
    ("AMD EPYC 7B13 64-Core Processor", "amd-epyc-7b13"),
    ("AMD EPYC 9654 96-Core Processor", "amd-epyc-9654"),
    ("AMD Ryzen 7 5800H with Radeon Graphics", "amd-ryzen-7-5800h"),
    ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", "amd-ryzen-threadripper-pro-5995wx"),
    ("AMD EPYC", "amd-epyc"),
    ("ARM Neoverse-N1", "arm-neoverse-n1"),
    ("Neoverse-V2", "neoverse-v2"),
    ("Apple M2 Pro", "apple-m2-pro"),
    ("", "unknown-cpu"),
])
def test_cpu_slug(model: str, slug: str) -> None:
    assert cpu_slug(model) == slug


@pytest.mark.parametrize(("total", "nominal"), [
    (503.4, 512), (1007.6, 1024), (754.9, 768), (62.8, 64), (23.5, 24), (15.6, 16), (1.9, 2),
    (20.0, 20), (39.2, 40), (470.3, 480), (566.0, 576), (1132.4, 1152), (24.0, 24), (None, 0), (0.0, 0),
])
def test_memory_class(total: float | None, nominal: int) -> None:
    assert memory_class_gib(total) == nominal


# ------------------------------------------------------------------------------------ testbed slug

def _fp(model: str, cores: int, mem: float, gpus: list[str] | None = None, host: str = "h1") -> dict:
    return {"hostname": host, "cpu": {"model": model, "logical_cores": cores},
            "memory_gib": mem, "gpu": {"names": gpus or [], "count": len(gpus or [])}}


@pytest.mark.parametrize(("fp", "slug"), [
    (_fp("AMD EPYC 7B13 64-Core Processor", 2, 23.5), "amd-epyc-7b13-2c-24g"),
    (_fp("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 64, 503.4, ["NVIDIA H100 80GB HBM3"] * 8),
     "intel-xeon-gold-6338-64c-512g-8x-nvidia-h100-80gb-hbm3"),
    (_fp("ARM Neoverse-V2", 72, 480.0, ["NVIDIA GH200 480GB"]), "arm-neoverse-v2-72c-480g-1x-nvidia-gh200-480gb"),
    (_fp("AMD EPYC 9654 96-Core Processor", 384, 1511.2, ["NVIDIA L4", "NVIDIA A10G", "NVIDIA L4"]),
     "amd-epyc-9654-384c-1536g-1x-nvidia-a10g-2x-nvidia-l4"),
])
def test_derive_testbed_examples(fp: dict, slug: str) -> None:
    assert derive_testbed(fp) == slug
    assert SLUG_RE.match(slug) and len(slug) <= 80


def test_testbed_ignores_hostname_and_is_stable() -> None:
    a = _fp("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 64, 503.4, ["NVIDIA H100 80GB HBM3"] * 8, host="a")
    b = _fp("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 64, 503.1, ["NVIDIA H100 80GB HBM3"] * 8, host="b")
    assert derive_testbed(a) == derive_testbed(b)
    # a different class must get a different slug
    assert derive_testbed(a) != derive_testbed(_fp(a["cpu"]["model"], 64, 503.4, ["NVIDIA H100 80GB HBM3"] * 4))


def test_testbed_long_is_cut_with_hash() -> None:
    gpus = [f"NVIDIA Very Long Accelerator Name Model {i}" for i in range(4)]
    fp = _fp("Intel(R) Xeon(R) Platinum 8480+ Extremely Verbose Engineering Sample", 224, 2015.0, gpus)
    slug = derive_testbed(fp)
    assert len(slug) <= 80 and SLUG_RE.match(slug)
    assert slug == derive_testbed(fp)
    other = _fp(fp["cpu"]["model"], 224, 2015.0, [*gpus[:3], "NVIDIA Very Long Accelerator Name Model 9"])
    assert derive_testbed(other) != slug  # the hash keeps cut slugs apart


def test_testbed_tolerates_partial_fingerprint() -> None:
    assert derive_testbed({}) == "unknown-cpu-0g"
    assert SLUG_RE.match(derive_testbed({"cpu": {"model": "Weird!!CPU  name"}, "memory_gib": None}))


def test_testbed_of_this_machine(tmp_path: Path) -> None:
    fp = collect_fingerprint(tmp_path)
    slug = derive_testbed(fp)
    assert SLUG_RE.match(slug) and len(slug) <= 80
    assert f"-{fp['cpu']['logical_cores']}c-" in slug
    assert derive_testbed({**fp, "hostname": "some-other-host", "dmi": {}, "kernel": "0.0"}) == slug


# ------------------------------------------------------------------------------------------- GPU

def test_gpu_inventory_here_never_raises_and_explains() -> None:
    inv = gpu_inventory()
    if inv.available:  # on a GPU box: a real inventory
        assert inv.gpus and all(g["name"] for g in inv.gpus)
        assert gpu_skip_reason() is None
    else:  # the plugin's own CI machines have no GPU: a precise reason
        assert inv.reason and inv.gpus == []
        reason = gpu_skip_reason()
        assert reason and inv.reason in reason
    json.dumps(inv.to_dict())


class _NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def _fake_pynvml(*, init_error: int | None = None, devices: list[dict] | None = None) -> types.ModuleType:
    """A stand-in pynvml: lets the degradation paths be tested on machines without the driver."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = _NVMLError  # type: ignore[attr-defined]
    mod.NVML_ERROR_LIBRARY_NOT_FOUND = 12  # type: ignore[attr-defined]
    mod.NVML_ERROR_DRIVER_NOT_LOADED = 9  # type: ignore[attr-defined]
    mod.NVML_ERROR_NO_PERMISSION = 4  # type: ignore[attr-defined]
    devs = devices or []

    def init() -> None:
        if init_error is not None:
            raise _NVMLError(init_error)

    def device(i: int) -> dict:
        return devs[i]

    def vbios(h: dict) -> str:
        if "vbios" not in h:
            raise _NVMLError(3)  # NOT_SUPPORTED
        return h["vbios"]

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"  # type: ignore[attr-defined]
    mod.nvmlSystemGetCudaDriverVersion = lambda: 12040  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(devs)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = device  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: h["name"].encode()  # type: ignore[attr-defined]  # old pynvml: bytes
    mod.nvmlDeviceGetUUID = lambda h: h["uuid"]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=h["mem"])  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=b"00000000:18:00.0")  # type: ignore[attr-defined]
    mod.nvmlDeviceGetVbiosVersion = vbios  # type: ignore[attr-defined]
    return mod


def test_gpu_reason_pynvml_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    inv = gpu_inventory()
    assert not inv.available and inv.reason.startswith("pynvml not installed")


@pytest.mark.parametrize(("code", "expected"), [
    (12, "NVML shared library not found (no NVIDIA driver)"),
    (9, "NVIDIA driver not loaded"),
    (4, "no permission"),
    (999, "NVML initialisation failed"),
])
def test_gpu_reason_init_failures(monkeypatch: pytest.MonkeyPatch, code: int, expected: str) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=code))
    inv = gpu_inventory()
    assert not inv.available and inv.reason.startswith(expected)


def test_gpu_reason_no_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(devices=[]))
    inv = gpu_inventory()
    assert not inv.available and inv.reason.startswith("no NVIDIA GPU")
    assert inv.driver_version == "550.54.15" and inv.cuda_driver_version == "12.4"
    assert gpu_skip_reason() is not None


def test_gpu_inventory_with_fake_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    devs = [{"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "mem": 80 * 1024**3, "vbios": "96.00.89"}
            for i in range(2)]
    del devs[1]["vbios"]  # one unsupported query must not hide the rest
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(devices=devs))
    inv = gpu_inventory()
    assert inv.available and inv.reason == ""
    assert [g["index"] for g in inv.gpus] == [0, 1]
    assert inv.gpus[0] == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0",
                           "memory_total_mib": 81920, "pci_bus_id": "00000000:18:00.0", "vbios": "96.00.89"}
    assert inv.gpus[1]["vbios"] is None
    assert gpu_skip_reason() is None
    clear_fingerprint_cache()  # the fingerprint reads the (fake) NVML through the same function
    fp = collect_fingerprint(Path("/"))
    assert fp["gpu"]["count"] == 2 and fp["gpu"]["names"] == ["NVIDIA H100 80GB HBM3"] * 2
    assert derive_testbed(fp).endswith("-2x-nvidia-h100-80gb-hbm3")


# ------------------------------------------------------------------------------------------- git

def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                    *args], cwd=cwd, check=True, capture_output=True)


def test_git_info_of_temp_repo(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git executable not found")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "bench")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()

    git = collect_fingerprint(repo)["git"]
    assert git == {"commit": head, "dirty": False, "branch": "bench"}

    (repo / "a.txt").write_text("two\n")
    assert collect_fingerprint(repo)["git"]["dirty"] is False  # cached for the process ...
    clear_fingerprint_cache()
    assert collect_fingerprint(repo)["git"]["dirty"] is True  # ... and re-read after clearing

    sub = repo / "sub"
    sub.mkdir()
    assert collect_fingerprint(sub)["git"]["commit"] == head  # any folder inside the checkout


def test_git_none_outside_repo(tmp_path: Path) -> None:
    assert collect_fingerprint(tmp_path)["git"] is None
