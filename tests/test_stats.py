"""Tests of the pinned summary statistics and their confidence intervals (measure/stats.py).

Example tests pin behaviour on small known data against numpy; property tests (hypothesis) pin the
invariants that verdicts rely on (ordering, CI containing its estimate, order and scale invariance,
lossless JSON round trip); a Monte-Carlo check pins the closed-form bootstrap against a real one; and a
seeded coverage check shows the intervals mean what they say without being able to flake.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_hwbench.measure.stats import (
    PERCENTILES,
    STAT_NAMES,
    Summary,
    bootstrap_ratio_of_medians,
    summarize,
)

PCT_NAMES = [name for name, _ in PERCENTILES]
PCTS = [p for _, p in PERCENTILES]

# Hypothesis: summaries are fast, but the first call imports scipy pieces, so no per-example deadline.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# Mix of arbitrary floats and small integers, so ties (common in quantised timings) are exercised too.
values = st.one_of(finite, st.integers(min_value=-5, max_value=5).map(float))
sample_lists = st.lists(values, min_size=1, max_size=300)
positive_lists = st.lists(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), min_size=1, max_size=40)


def nan_equal(a: object, b: object) -> bool:
    """Structural equality where nan == nan (plain == says nan != nan)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(nan_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def summaries_equal(a: Summary, b: Summary) -> bool:
    return nan_equal(a.to_dict(), b.to_dict())


# --- examples against numpy ------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    [3.0, 1.0, 2.0],
    list(range(10)),
    [1.5, 2.5, 2.5, 2.5, 9.0, -4.0, 0.0],
    np.random.default_rng(7).lognormal(size=1001),
    np.arange(100, dtype=np.int32),
    np.linspace(-1, 3, 64, dtype=np.float32),
])
def test_matches_numpy_on_known_data(data):
    x = np.asarray(data, dtype=np.float64)
    s = summarize(data)
    assert s.count == x.size
    assert s.mean == pytest.approx(np.mean(x), rel=1e-12, abs=1e-12)
    assert s.stdev == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert s.cv == pytest.approx(np.std(x, ddof=1) / abs(np.mean(x)), rel=1e-9)
    assert (s.min, s.max) == (x.min(), x.max())
    # Bit-identical to numpy's default (linear) method: the pinned definition.
    assert [s.percentiles[n] for n in PCT_NAMES] == np.percentile(x, PCTS).tolist()
    assert isinstance(s.count, int) and all(isinstance(v, float) for v in s.percentiles.values())


def test_single_sample():
    s = summarize([42.0])
    assert s.count == 1 and s.mean == 42.0 and s.min == s.max == 42.0
    assert math.isnan(s.stdev) and math.isnan(s.cv)
    assert all(v == 42.0 for v in s.percentiles.values())
    assert all(ci == (42.0, 42.0) for ci in s.ci.values())
    assert set(s.ci) == {"mean", *PCT_NAMES}


def test_constant_data_collapses_every_interval():
    s = summarize([7.25] * 50)
    assert s.stdev == 0.0 and s.cv == 0.0
    assert all(ci == (7.25, 7.25) for ci in s.ci.values())


def test_ties_match_numpy_and_stay_within_data():
    data = [2.0, 2.0, 2.0, 5.0, 5.0, 2.0, 5.0, 9.0]
    s = summarize(data)
    assert [s.percentiles[n] for n in PCT_NAMES] == np.percentile(data, PCTS).tolist()
    for name in PCT_NAMES:
        lo, hi = s.ci[name]
        assert lo in data and hi in data  # percentile CI ends are order statistics


def test_cv_undefined_when_mean_is_zero():
    s = summarize([-1.0, 1.0])
    assert s.mean == 0.0 and math.isnan(s.cv) and s.stdev == pytest.approx(math.sqrt(2))


def test_mean_ci_is_student_t():
    x = np.random.default_rng(3).normal(10, 2, size=40)
    lo, hi = summarize(x, confidence=0.9).ci["mean"]
    half = sps.t.ppf(0.95, 39) * np.std(x, ddof=1) / math.sqrt(40)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)


@pytest.mark.parametrize("bad, counts", [
    ([1.0, float("nan"), 2.0, float("nan")], "2 NaN and 0 infinite"),
    ([float("inf"), 1.0, -float("inf"), float("nan")], "1 NaN and 2 infinite"),
])
def test_non_finite_values_are_rejected_with_counts(bad, counts):
    with pytest.raises(ValueError, match=counts):
        summarize(bad)
    with pytest.raises(ValueError, match=counts):
        summarize(np.asarray(bad))


@pytest.mark.parametrize("empty", [[], np.array([]), np.empty((0, 3))])
def test_empty_input_is_rejected(empty):
    with pytest.raises(ValueError, match="empty"):
        summarize(empty)


def test_non_numeric_input_is_rejected():
    with pytest.raises(TypeError, match="numeric"):
        summarize(["1", "2"])
    with pytest.raises(TypeError, match="scalar"):
        summarize(np.float64(3.0))


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_confidence_must_be_a_probability(confidence):
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=confidence)


def test_callers_data_is_not_reordered():
    x = np.random.default_rng(0).normal(size=500)
    before = x.copy()
    summarize(x)
    summarize(x[::3])
    buf = bytearray(before.tobytes())
    summarize(memoryview(buf).cast("d"))
    assert np.array_equal(x, before)
    assert bytes(buf) == before.tobytes()


def test_huge_magnitudes_do_not_overflow_the_moments():
    data = [1e300, -1e300, 3e300, 2e300]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize(data)
    assert s.mean == pytest.approx(1.25e300)
    assert s.stdev == pytest.approx(np.std(np.asarray(data) / 1e300, ddof=1) * 1e300)
    near_max = summarize([1.7e308, 1.7e308])
    assert near_max.mean == 1.7e308 and near_max.stdev == 0.0


def test_multidimensional_input_is_pooled():
    grid = np.arange(12.0).reshape(3, 4)
    assert summaries_equal(summarize(grid), summarize(grid.ravel()))


# --- name lookup and serialisation ----------------------------------------------------------------------

def test_stat_by_name():
    s = summarize(np.arange(1.0, 1001.0))
    for name in STAT_NAMES:
        assert isinstance(s.stat(name), (int, float))
    assert s.stat("median") == s.stat("p50") == s.percentiles["p50"]
    assert s.stat("p99.9") == s.percentiles["p99.9"]
    assert s.stat("count") == 1000 and s.stat("min") == 1.0 and s.stat("max") == 1000.0
    with pytest.raises(KeyError, match=r"p99\.9") as err:
        s.stat("p999")
    assert "median" in str(err.value) and "'p999'" in str(err.value)


def test_ci_of():
    s = summarize(np.arange(100.0))
    assert s.ci_of("median") == s.ci_of("p50") == s.ci["p50"]
    assert s.ci_of("mean") == s.ci["mean"]
    for name in ("count", "stdev", "cv", "min", "max"):
        assert s.ci_of(name) is None
    with pytest.raises(KeyError, match="valid names"):
        s.ci_of("p75")


def test_to_dict_is_plain_json():
    d = summarize([5.0]).to_dict()
    assert d["stdev"] is None and d["cv"] is None
    assert d["ci"]["p50"] == [5.0, 5.0]
    text = json.dumps(d, allow_nan=False)  # raises if any nan/inf leaked through
    assert set(json.loads(text)) == {"count", "mean", "stdev", "cv", "min", "max", *PCT_NAMES, "ci",
                                     "confidence"}
    assert summaries_equal(Summary.from_dict(json.loads(text)), summarize([5.0]))


def test_from_dict_names_missing_keys():
    d = summarize([1.0, 2.0]).to_dict()
    del d["p99.9"], d["mean"]
    with pytest.raises(ValueError, match=r"'mean'.*'p99\.9'"):
        Summary.from_dict(d)


# --- the closed-form bootstrap against a real one ---------------------------------------------------------

def test_closed_form_matches_monte_carlo_bootstrap():
    """P(X*(k) <= x(j)) = P(Binom(n, j/n) >= k), and the median CI equals a (big) real bootstrap's."""
    rng = np.random.default_rng(11)
    n = 25  # odd: the median is an order statistic, so the bracket is exact, not conservative
    x = np.sort(rng.normal(size=n))
    idx = np.sort(rng.integers(0, n, size=(100_000, n)), axis=1)
    for k in (1, 6, 13, 25):
        empirical = (idx[:, k - 1][:, None] <= np.arange(n)[None, :]).mean(axis=0)
        exact = sps.binom.sf(k - 1, n, np.arange(1, n + 1) / n)
        assert np.abs(empirical - exact).max() < 0.01
    boot_medians = x[idx[:, n // 2]]
    mc_ranks = np.searchsorted(x, np.quantile(boot_medians, [0.025, 0.975], method="inverted_cdf"))
    lo, hi = summarize(x).ci["p50"]
    ranks = np.searchsorted(x, [lo, hi])
    assert np.abs(ranks - mc_ranks).max() <= 1  # Monte-Carlo noise can move a quantile by one rank


def test_percentile_ci_coverage_is_near_nominal():
    """Seeded, so it cannot flake: over 200 normal samples of 200, the 95 % CIs cover the truth."""
    rng = np.random.default_rng(20240601)
    truth = {"p50": 0.0, "p90": sps.norm.ppf(0.9), "mean": 0.0}
    hits = dict.fromkeys(truth, 0)
    for _ in range(200):
        s = summarize(rng.normal(size=200))
        for name, value in truth.items():
            lo, hi = s.ci[name]
            hits[name] += lo <= value <= hi
    assert all(h >= 0.85 * 200 for h in hits.values()), hits


def test_higher_confidence_never_narrows():
    x = np.random.default_rng(5).exponential(size=300)
    narrow, wide = summarize(x, confidence=0.8), summarize(x, confidence=0.99)
    for name in ("mean", *PCT_NAMES):
        assert wide.ci[name][0] <= narrow.ci[name][0] and narrow.ci[name][1] <= wide.ci[name][1]


# --- properties ------------------------------------------------------------------------------------------

@FAST
@given(sample_lists)
def test_percentiles_monotone_within_range_and_equal_to_numpy(xs):
    s = summarize(xs)
    p = [s.percentiles[n] for n in PCT_NAMES]
    assert p == sorted(p)
    assert s.min <= p[0] and p[-1] <= s.max
    assert p == np.percentile(np.asarray(xs), PCTS).tolist()


@FAST
@given(sample_lists, st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_every_ci_contains_its_estimate(xs, confidence):
    s = summarize(xs, confidence=confidence)
    assert s.ci["mean"][0] <= s.mean <= s.ci["mean"][1]
    for name in PCT_NAMES:
        lo, hi = s.ci[name]
        assert s.min <= lo <= s.percentiles[name] <= hi <= s.max


@FAST
@given(sample_lists, st.randoms(use_true_random=False))
def test_invariant_to_sample_order(xs, rnd):
    shuffled = list(xs)
    rnd.shuffle(shuffled)
    a, b = summarize(xs), summarize(shuffled)
    # Order statistics and their CIs are identical to the bit.
    assert (a.count, a.min, a.max, a.percentiles, a.confidence) == (b.count, b.min, b.max, b.percentiles,
                                                                     b.confidence)
    assert {k: v for k, v in a.ci.items() if k != "mean"} == {k: v for k, v in b.ci.items() if k != "mean"}
    # Moments are sums, so a different order can change the last bits (floating-point addition).
    scale = max(abs(a.min), abs(a.max), 1e-300)
    assert a.mean == pytest.approx(b.mean, rel=1e-12, abs=1e-12 * scale)
    assert nan_equal(a.stdev, b.stdev) or a.stdev == pytest.approx(b.stdev, rel=1e-9, abs=1e-12 * scale)
    for lo_hi_a, lo_hi_b in zip(a.ci["mean"], b.ci["mean"], strict=True):
        assert lo_hi_a == pytest.approx(lo_hi_b, rel=1e-9, abs=1e-9 * scale)


@FAST
@given(sample_lists, st.floats(min_value=1e-3, max_value=1e3))
def test_scaling_scales_location_stats_and_cis(xs, c):
    a = summarize(xs)
    b = summarize(np.asarray(xs) * c)
    tol = 1e-12 * c * max(abs(a.min), abs(a.max), 1e-300)  # a few ulps of the largest value
    for name in ("mean", "min", "max", *PCT_NAMES):
        assert b.stat(name) == pytest.approx(c * a.stat(name), rel=1e-12, abs=tol)
    for name, (lo, hi) in a.ci.items():
        assert b.ci[name][0] == pytest.approx(c * lo, rel=1e-9, abs=tol)
        assert b.ci[name][1] == pytest.approx(c * hi, rel=1e-9, abs=tol)
    if a.count > 1:
        assert b.stdev == pytest.approx(c * a.stdev, rel=1e-9, abs=tol)


@FAST
@given(sample_lists, st.sampled_from([0.8, 0.95, 0.99]))
def test_to_dict_from_dict_round_trip(xs, confidence):
    s = summarize(xs, confidence=confidence)
    back = Summary.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
    assert summaries_equal(back, s)
    assert nan_equal(back.stdev, s.stdev) and back.percentiles == s.percentiles and back.ci == s.ci


# --- ratio of medians ------------------------------------------------------------------------------------

def test_ratio_point_and_determinism():
    cur, base = [1.10, 1.20, 1.05, 1.15, 1.12], [1.00, 1.02, 0.99, 1.01, 0.98]
    point, lo, hi = bootstrap_ratio_of_medians(cur, base, seed=3)
    assert point == pytest.approx(np.median(cur) / np.median(base))
    assert lo <= point <= hi and lo > 1.0  # a clear 10 % shift is resolved
    assert bootstrap_ratio_of_medians(cur, base, seed=3) == (point, lo, hi)
    assert bootstrap_ratio_of_medians(np.asarray(cur), np.asarray(base), seed=3) == (point, lo, hi)


def test_ratio_with_one_value_per_side_collapses():
    assert bootstrap_ratio_of_medians([3.0], [2.0]) == (1.5, 1.5, 1.5)


def test_ratio_wider_confidence_is_wider():
    rng = np.random.default_rng(1)
    cur, base = rng.normal(100, 5, 12), rng.normal(100, 5, 12)
    _, lo80, hi80 = bootstrap_ratio_of_medians(cur, base, confidence=0.8, seed=0)
    _, lo99, hi99 = bootstrap_ratio_of_medians(cur, base, confidence=0.99, seed=0)
    assert lo99 <= lo80 and hi80 <= hi99


def test_ratio_input_errors():
    with pytest.raises(ValueError, match="baseline median is 0"):
        bootstrap_ratio_of_medians([1.0, 2.0], [0.0, 0.0, 5.0])
    with pytest.raises(ValueError, match="current is empty"):
        bootstrap_ratio_of_medians([], [1.0])
    with pytest.raises(ValueError, match="baseline is empty"):
        bootstrap_ratio_of_medians([1.0], [])
    with pytest.raises(ValueError, match="non-finite values in baseline: 1 NaN"):
        bootstrap_ratio_of_medians([1.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ratio_of_medians([1.0], [1.0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ratio_of_medians([1.0], [1.0], confidence=95)


def test_ratio_unbounded_when_resampled_baseline_median_can_be_zero():
    point, lo, hi = bootstrap_ratio_of_medians([1.0, 2.0], [0.0, 5.0], seed=0)
    assert point == pytest.approx(0.6) and lo <= point and hi == math.inf


def test_ratio_large_inputs_are_chunked_not_materialised():
    rng = np.random.default_rng(2)
    cur, base = rng.normal(10, 1, 5000), rng.normal(10, 1, 5000)
    point, lo, hi = bootstrap_ratio_of_medians(cur, base, resamples=200, seed=0)
    assert lo <= point <= hi and hi - lo < 0.05


@FAST
@given(positive_lists, positive_lists, st.integers(0, 2**32 - 1), st.randoms(use_true_random=False))
def test_ratio_ci_contains_point_and_ignores_input_order(cur, base, seed, rnd):
    point, lo, hi = bootstrap_ratio_of_medians(cur, base, resamples=300, seed=seed)
    assert lo <= point <= hi
    assert point == np.median(cur) / np.median(base)
    cur2, base2 = list(cur), list(base)
    rnd.shuffle(cur2)
    rnd.shuffle(base2)
    assert bootstrap_ratio_of_medians(cur2, base2, resamples=300, seed=seed) == (point, lo, hi)


def test_one_sample_skips_the_bootstrap_and_matches_its_answer():
    """Nothing to resample: the fast path gives what the general path would (every CI is the value)."""
    s = summarize([4.5])
    assert s.count == 1 and s.mean == s.min == s.max == 4.5
    assert math.isnan(s.stdev) and math.isnan(s.cv)
    assert set(s.ci) == {"mean", "p50", "p90", "p95", "p99", "p99.9"}
    assert all(ci == (4.5, 4.5) for ci in s.ci.values())
    assert all(v == 4.5 for v in s.percentiles.values())
    with pytest.raises(ValueError, match="non-finite"):
        summarize([float("nan")])


def test_ratio_of_constant_sides_needs_no_resampling():
    assert bootstrap_ratio_of_medians([2.0], [1.0]) == (2.0, 2.0, 2.0)
    assert bootstrap_ratio_of_medians([3.0, 3.0, 3.0], [1.5, 1.5]) == (2.0, 2.0, 2.0)
