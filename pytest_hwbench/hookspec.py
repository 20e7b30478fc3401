"""Hooks that other plugins and conftest files may implement to extend pytest-hwbench.

They run on the controller only (the one writer under xdist), with plain-JSON data.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_hwbench_result(config: pytest.Config, result: dict[str, Any]) -> None:
    """Called once per finished hwbench test with its result record (as written to results.jsonl).

    Use it to push results to another store; do not mutate ``result``.
    """


def pytest_hwbench_run_finished(config: pytest.Config, run_dir: str, results: list[dict[str, Any]]) -> None:
    """Called once at session end after ``results.json`` and ``run.json`` were written to ``run_dir``."""
