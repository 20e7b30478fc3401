"""Fixtures shared by the shipped benchmarks (``benchmarks/``). The plugin itself loads from its entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def scratch_dir(hwbench, tmp_path: Path) -> Iterator[Path]:
    """Directory on the disk under test: recipe ``settings.scratch_dir`` if set, else pytest's tmp_path."""
    configured = hwbench.settings.get("scratch_dir")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        yield tmp_path
