"""Knee of a sweep and max sustainable load under SLO, on synthetic curves with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.verdict.knee import analyze_sweep, find_knee, max_sustainable_load

LOADS = [1, 2, 4, 6, 8, 10, 12, 16]


def throughput(loads, capacity=8.0, per_unit=20.0):
    return [min(x, capacity) * per_unit for x in loads]


def latency(loads, capacity=8.0, base=50.0):
    return [base * max(1.0, x / capacity) for x in loads]


@pytest.mark.parametrize("loads", [LOADS, [1, 2, 4, 6, 10, 12, 16], [16, 1, 8, 4, 12, 2, 10, 6]])
def test_noiseless_hockey_sticks_give_the_exact_capacity(loads):
    k = find_knee(loads, throughput(loads))
    assert k.load == pytest.approx(8.0, abs=1e-6)
    assert k.slope_before == pytest.approx(20) and k.slope_after == pytest.approx(0, abs=1e-9)
    # latency flat then proportional to load: the same knee from the other side
    assert find_knee(loads, latency(loads)).load == pytest.approx(8.0, abs=1e-6)


def test_knee_between_samples_is_located_between_them():
    loads = [1, 2, 3, 4, 6, 8, 10]
    k = find_knee(loads, throughput(loads, capacity=5.0))
    assert k.load == pytest.approx(5.0, abs=1e-6) and k.nearest_load in (4, 6)


def test_noise_and_repeated_points_do_not_move_the_knee_far():
    rng = np.random.default_rng(7)
    loads = [x for x in [1, 2, 3, 4, 5, 6, 7, 8, 10, 12] for _ in range(3)]
    values = [v * (1 + rng.normal(0, 0.05)) for v in throughput(loads, capacity=6.0)]
    k = find_knee(loads, values)
    assert k.load == pytest.approx(6.0, abs=0.6) and k.nearest_load == 6


def test_no_knee_when_the_curve_keeps_its_slope_or_points_are_too_few():
    assert find_knee(LOADS, [3 * x + 1 for x in LOADS]).load is None
    assert find_knee(LOADS, [5.0] * len(LOADS)).load is None
    assert find_knee([1, 2, 3], [1, 2, 2]).load is None
    assert find_knee([1, 2, np.nan, 4, 5, 6], [1, 2, 3, 4, 4, 4]).load == pytest.approx(4, abs=1e-6)
    with pytest.raises(HwbenchInputError):
        find_knee([1, 2], [1])


def test_max_sustainable_load_is_contiguous_from_the_bottom():
    points = [{"ttft_ms.p99": v, "error_rate": 0.0} for v in (100, 120, 150, 700, 200, 900)]
    loads = [1, 2, 4, 8, 12, 16]
    res = max_sustainable_load(loads, points, [("ttft_ms.p99", "<", 500), ("error_rate", "<=", 0.01)])
    # 12 passes again, but above a failure at 8: luck, not capacity
    assert res.load == 4 and res.first_failing_load == 8 and res.passing[12.0] is True
    assert max_sustainable_load(loads, points, lambda p: p["ttft_ms.p99"] < 50).load is None
    assert max_sustainable_load(loads, points, lambda p: True).load == 16
    missing = max_sustainable_load([1, 2], [{"x": 1}, {}], [("x", "<", 5)])
    assert missing.load == 1 and missing.first_failing_load == 2
    # a load measured twice must pass both times
    assert max_sustainable_load([1, 2, 2], [{"x": 1}, {"x": 1}, {"x": 9}], [("x", "<", 5)]).load == 1
    with pytest.raises(HwbenchInputError, match="op"):
        max_sustainable_load([1], [{"x": 1}], [("x", "!=", 5)])


def test_analyze_sweep_reports_both_knees_and_the_sustainable_load_as_json():
    points = [{"req_s": t, "e2el_ms.p99": lat} for t, lat in zip(throughput(LOADS), latency(LOADS), strict=True)]
    res = analyze_sweep(LOADS, points, latency="e2el_ms.p99", slo=[("e2el_ms.p99", "<", 70)])
    assert res.throughput_knee.load == pytest.approx(8)
    assert res.latency_knee is not None and res.latency_knee.load == pytest.approx(8)
    assert res.sustainable is not None and res.sustainable.load == 10  # 62.5 ms at 10, 75 at 12
    data = json.loads(json.dumps(res.to_dict()))
    assert data["throughput_knee"]["nearest_load"] == 8 and data["max_sustainable"]["load"] == 10
