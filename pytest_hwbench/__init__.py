"""pytest-hwbench: benchmarks as pytest tests, with per-test SLO and baseline verdicts.

The package is laid out as the data flow (see docs/architecture.md): ``recipe`` -> ``services`` -> ``workloads`` ->
``measure`` -> ``verdict`` -> ``report``; ``plugin`` only wires pytest hooks to them and ``session`` holds
the one per-session state object.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pytest_hwbench.errors import HwbenchInputError

__all__ = ["HwbenchInputError", "__version__"]
