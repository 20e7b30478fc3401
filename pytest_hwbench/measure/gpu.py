"""NVIDIA GPU inventory through NVML (``pynvml`` from the ``nvidia-ml-py`` package).

Why it looks like this:

* ``pynvml`` is an optional extra (``pytest-hwbench[gpu]``), so it is imported lazily and its absence is a
  normal answer, not an error. Most machines that run the plugin's own tests have no GPU at all.
* The inventory feeds the machine fingerprint (testbed slug, environment diff against a baseline) and the
  skip reason of GPU tests. Both need a *precise* reason when there is no GPU: "pynvml not installed" and
  "NVML shared library not found (no NVIDIA driver)" call for different fixes, and CI turns skips into
  failures, so the message is what the engineer reads.
* Where the operating system shows no NVIDIA driver at all (Linux without ``/proc/driver/nvidia``,
  ``/dev/nvidiactl`` or WSL's ``/dev/dxg``), ``pynvml`` is not even imported (:func:`no_driver_reason`): it
  is a 5,000-line module, and on the CPU-only machines where most measuring sessions run, importing it
  for an answer the file system already gives cost ~13 ms and 5,500 objects that every later full garbage
  collection of the session scanned again (issue #14).
* :func:`gpu_inventory` never raises: a fingerprint must be collected even on a box with a broken driver;
  a broken driver is itself something to report.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GpuInventory", "gpu_inventory", "gpu_skip_reason", "no_driver_reason"]

#: Files the NVIDIA driver creates: the kernel module's /proc entry, its control device (also present in a
#: container started with the NVIDIA runtime), and WSL 2's GPU paravirtualisation device.
DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")

# NVML init/shutdown is reference counted by the library, but pynvml's Python-side bookkeeping is not
# thread safe; resource samplers may call NVML from another thread at the same time.
_NVML_LOCK = threading.Lock()


@dataclass
class GpuInventory:
    """What NVML says about this machine's NVIDIA GPUs.

    ``available`` is True only when NVML initialised and reported at least one GPU; otherwise ``reason``
    says why (precise enough to act on) and ``gpus`` is empty. Each GPU is a plain dict
    ``{index, name, uuid, memory_total_mib, pci_bus_id, vbios}`` (fields NVML cannot read are None), so
    the inventory goes into JSON reports unchanged.
    """

    available: bool
    reason: str = ""
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for fingerprints and reports."""
        return asdict(self)


def _text(value: Any) -> str:
    """NVML strings are ``bytes`` in old pynvml releases and ``str`` in new ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    return str(value).strip()


def _cuda_version(raw: int) -> str:
    """NVML encodes the CUDA driver API version as 1000*major + 10*minor (12040 -> "12.4")."""
    return f"{raw // 1000}.{(raw % 1000) // 10}"


def _init_failure_reason(pynvml: Any, err: Exception) -> str:
    """Map an nvmlInit failure to a reason that says what to fix."""
    code = getattr(err, "value", None)
    known = {
        "NVML_ERROR_LIBRARY_NOT_FOUND": "NVML shared library not found (no NVIDIA driver)",
        "NVML_ERROR_DRIVER_NOT_LOADED": "NVIDIA driver not loaded (is the kernel module loaded?)",
        "NVML_ERROR_NO_PERMISSION": "no permission to access the NVIDIA driver (/dev/nvidia*)",
        "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
            "NVML library and kernel driver versions differ (driver upgraded without reboot?)"
        ),
        "NVML_ERROR_FUNCTION_NOT_FOUND": "NVML library is too old for this pynvml (upgrade the driver)",
    }
    for const, text in known.items():
        if code is not None and code == getattr(pynvml, const, object()):
            return text
    return f"NVML initialisation failed: {err}"


def _device_info(pynvml: Any, index: int) -> dict[str, Any]:
    """One GPU's identity; each field is read on its own so one unsupported query does not hide the rest."""
    info: dict[str, Any] = {"index": index, "name": None, "uuid": None, "memory_total_mib": None,
                            "pci_bus_id": None, "vbios": None}
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    readers = {
        "name": lambda: _text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": lambda: _text(pynvml.nvmlDeviceGetUUID(handle)),
        "memory_total_mib": lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
        "pci_bus_id": lambda: _text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
        "vbios": lambda: _text(pynvml.nvmlDeviceGetVbiosVersion(handle)),
    }
    for key, read in readers.items():
        try:
            info[key] = read()
        except Exception:  # NVMLError_NotSupported and friends: keep None
            info[key] = None
    return info


def no_driver_reason() -> str | None:
    """Why NVML cannot work here, when the file system already says so (Linux, none of ``DRIVER_FILES``);
    None when NVML should be asked. A ``pynvml`` already imported (or stood in for) is always asked."""
    if "pynvml" in sys.modules or not sys.platform.startswith("linux"):
        return None
    if any(os.path.exists(path) for path in DRIVER_FILES):
        return None
    return f"no NVIDIA driver on this machine (none of {', '.join(DRIVER_FILES)} exists)"


def gpu_inventory() -> GpuInventory:
    """Inventory of NVIDIA GPUs, or ``available=False`` with a precise reason. Never raises."""
    absent = no_driver_reason()
    if absent:
        return GpuInventory(available=False, reason=absent)
    try:
        import pynvml  # type: ignore[import-not-found]  # optional extra: pytest-hwbench[gpu]
    except ImportError:
        return GpuInventory(available=False, reason="pynvml not installed (pip install nvidia-ml-py)")
    except Exception as err:  # a broken install must not break fingerprinting
        return GpuInventory(available=False, reason=f"pynvml failed to import: {err}")

    with _NVML_LOCK:
        try:
            pynvml.nvmlInit()
        except Exception as err:
            return GpuInventory(available=False, reason=_init_failure_reason(pynvml, err))
        try:
            inv = GpuInventory(available=False)
            with contextlib.suppress(Exception):
                inv.driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
            with contextlib.suppress(Exception):
                inv.cuda_driver_version = _cuda_version(int(pynvml.nvmlSystemGetCudaDriverVersion()))
            try:
                count = int(pynvml.nvmlDeviceGetCount())
            except Exception as err:
                inv.reason = f"NVML could not count GPUs: {err}"
                return inv
            if count == 0:
                inv.reason = "no NVIDIA GPU (NVML reports 0 devices)"
                return inv
            for index in range(count):
                try:
                    inv.gpus.append(_device_info(pynvml, index))
                except Exception as err:
                    inv.gpus.append({"index": index, "name": None, "uuid": None, "memory_total_mib": None,
                                     "pci_bus_id": None, "vbios": None, "error": str(err)})
            inv.available = any(g.get("name") for g in inv.gpus)
            if not inv.available:
                inv.reason = "NVML lists GPUs but none could be queried (GPU lost or reset required?)"
            return inv
        except Exception as err:  # belt and braces: the contract is "never raises"
            return GpuInventory(available=False, reason=f"NVML query failed: {err}")
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()


def gpu_skip_reason() -> str | None:
    """None when an NVIDIA GPU is usable, else the reason, ready for ``pytest.skip`` / ``unavailable``."""
    inv = gpu_inventory()
    if inv.available:
        return None
    return f"no usable NVIDIA GPU: {inv.reason}"
