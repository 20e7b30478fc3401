"""The ``hwbench`` console script, run as a user runs it (a subprocess on PATH)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def hwbench(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hwbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "pytest_hwbench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_recipes_validate_accepts_the_shipped_recipes() -> None:
    recipes = sorted(str(p) for p in (ROOT / "recipes").glob("*.yaml"))
    assert recipes
    proc = hwbench("recipes", "validate", *recipes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("OK ") == len(recipes)


def test_recipes_validate_reports_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrepetitons: 3\n")
    proc = hwbench("recipes", "validate", str(bad))
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stdout and "repetitons" in proc.stdout and "repetitions" in proc.stdout


def test_testbed_prints_name_and_fingerprint() -> None:
    proc = hwbench("testbed", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["testbed"] and doc["fingerprint"]["cpu"]["logical_cores"] >= 1


@pytest.mark.parametrize("args", [[], ["nonsense"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert hwbench(*args).returncode == 2
