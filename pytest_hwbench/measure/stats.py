"""Statistics over raw samples: the pinned summary (docs/architecture.md) and its confidence intervals.

Why the intervals are computed the way they are
-----------------------------------------------
docs/metrics.md pins "p50 p90 p95 p99 p99.9, each with a bootstrap CI". A Monte-Carlo bootstrap of a percentile
over millions of latency samples would cost ``resamples x n`` work and memory, and it would be random: two
runs over the same data would print different intervals. We compute the *same* interval exactly instead.

For sorted data ``x(1) <= ... <= x(n)``, the k-th order statistic ``X*(k)`` of a bootstrap resample
(``n`` draws with replacement) is ``<= x(j)`` exactly when at least ``k`` of the ``n`` draws landed on one
of the ``j`` smallest values, and each draw does so with probability ``j/n``::

    P(X*(k) <= x(j)) = P(Binomial(n, j/n) >= k)

So the bootstrap distribution of every order statistic is known in closed form: it is the
infinite-resample limit of the percentile bootstrap, with no RNG and no resampling cost. numpy's default
(linear) percentile at virtual position ``h = (n - 1) q`` interpolates between order statistics
``floor(h)`` and ``ceil(h)`` (0-based), so a resampled percentile lies between the resampled values of
those two order statistics. The interval's low end is the ``(1 - confidence)/2`` quantile of the lower
bracketing order statistic, and its high end is the ``(1 + confidence)/2`` quantile of the upper one. That
bracket can only be wider than the bootstrap interval of the interpolated estimate, never narrower, so it
errs on the conservative side. It is clamped so that ``low <= estimate <= high``.

Finding those quantiles is a bisection over ``j`` on ``scipy.stats.binom.sf`` (about 25 vectorised calls),
and reading them needs only the order statistics at a couple of dozen ranks. One ``np.partition`` with
those ranks as ``kth`` gets them in O(n) without fully sorting, which is the same work ``np.percentile``
does itself. The partitioned copy is then reused in place for the sum of squared deviations, so a
summary of a float64 array costs about one extra copy of it.

The mean's interval is Student's t, which is what the bootstrap of the mean converges to for large n and
is exact for normal data. With one sample it collapses to ``(mean, mean)``.

The baseline comparison (``bootstrap_ratio_of_medians``) is different. It resamples a handful of per-trial
values, the statistic is a ratio of two medians with no convenient closed form, and the data are tiny, so
it is an ordinary seeded percentile bootstrap, vectorised as one index matrix per side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

#: Percentiles every summary carries, as (stat name, percent).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9),
)
#: Every statistic name an SLO may use. ``median`` is an alias of ``p50``.
STAT_NAMES: tuple[str, ...] = ("count", "mean", "stdev", "cv", "min", "max", "median",
                               *(name for name, _ in PERCENTILES))

_SCALAR_STATS = ("count", "mean", "stdev", "cv", "min", "max")
_PERCENTILE_NAMES = tuple(name for name, _ in PERCENTILES)
#: Above this magnitude, a sum of squared deviations could overflow float64 (2**(2*400+2) per term leaves
#: room for 2**200 samples), so moments are computed on data scaled down by a power of two instead.
_SCALE_THRESHOLD = 2.0 ** 400
#: Upper bound on index-matrix elements generated at once by the ratio bootstrap (bounds memory to ~32 MB).
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Summary:
    """Summary of one metric's pooled samples.

    ``ci`` maps a stat name (``mean`` and each percentile name) to its (low, high) confidence interval at
    ``confidence``. Undefined values (stdev of one sample, CV with mean 0) are ``nan``.
    """

    count: int
    mean: float
    stdev: float
    cv: float
    min: float
    max: float
    percentiles: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    confidence: float = 0.95

    def stat(self, name: str) -> float:
        """Value of a stat by name (one of STAT_NAMES); raises KeyError for unknown names.

        SLO expressions name stats as strings (``ttft_ms.p99``), so this is the one place that maps a
        name to a value. Unknown names fail loudly with the valid list instead of evaluating to nothing.
        """
        key = _canonical(name)
        if key in _SCALAR_STATS:
            return getattr(self, key)
        return self.percentiles[key]

    def ci_of(self, name: str) -> tuple[float, float] | None:
        """CI of a stat by name (``median`` maps to ``p50``), or None when the stat has none.

        Raises KeyError, like ``stat``, for a name that is not in STAT_NAMES, so a typo is not mistaken
        for "this stat has no interval".
        """
        return self.ci.get(_canonical(name))

    def to_dict(self) -> dict:
        """Plain JSON types; nan/inf become None. Keys: count, mean, stdev, cv, min, max, p50..p99.9,
        ci {name: [lo, hi]}, confidence."""
        out: dict[str, Any] = {"count": int(self.count)}
        for key in _SCALAR_STATS[1:]:
            out[key] = _jsonable(getattr(self, key))
        for key in _PERCENTILE_NAMES:
            out[key] = _jsonable(self.percentiles.get(key, math.nan))
        out["ci"] = {key: [_jsonable(lo), _jsonable(hi)] for key, (lo, hi) in self.ci.items()}
        out["confidence"] = float(self.confidence)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """Inverse of to_dict (None back to nan).

        Baselines and results files are read back through here, so a truncated or hand-edited summary
        gets a ValueError naming the missing keys rather than a bare KeyError deep inside a verdict.
        """
        missing = [k for k in (*_SCALAR_STATS, *_PERCENTILE_NAMES) if k not in data]
        if missing:
            raise ValueError(f"summary is missing keys {missing}; expected the keys written by "
                             "Summary.to_dict()")
        ci_raw = data.get("ci") or {}
        ci = {str(k): (_from_json(v[0]), _from_json(v[1])) for k, v in ci_raw.items()}
        return cls(count=int(data["count"]),
                   mean=_from_json(data["mean"]), stdev=_from_json(data["stdev"]),
                   cv=_from_json(data["cv"]), min=_from_json(data["min"]), max=_from_json(data["max"]),
                   percentiles={k: _from_json(data[k]) for k in _PERCENTILE_NAMES},
                   ci=ci, confidence=float(data.get("confidence", 0.95)))


def summarize(samples: np.ndarray | Sequence[float], confidence: float = 0.95) -> Summary:
    """Summarise raw samples (non-empty, finite). Percentiles use numpy's default (linear) method.

    Any numeric input (list, array of any int/float dtype, any shape: it is pooled) is converted to
    float64. Percentile estimates are bit-identical to ``np.percentile``; their CIs are the exact
    infinite-resample percentile bootstrap (see the module docstring); the mean's CI is Student's t.
    """
    _check_confidence(confidence)
    if type(samples) is list and len(samples) == 1 and type(samples[0]) is float:
        return _single(samples[0], confidence)  # one recorded value: no array (and no numpy import) needed
    import numpy as np

    x, owned = _as_float_array(samples, "samples")
    n = x.size
    if n == 1:  # nothing to resample: every statistic and every interval is the value itself
        return _single(float(x[0]), confidence)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(x.sum())
    if not math.isfinite(total):
        _raise_if_nonfinite(x, "samples")  # otherwise the values are finite and only their sum overflowed

    # Ranks needed: numpy's interpolation neighbours, the CI order statistics, and min/max.
    positions = [_linear_position(n, pct) for _, pct in PERCENTILES]
    alpha_lo, alpha_hi = (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0
    ci_ranks = _bootstrap_order_stat_quantiles(
        n, ks=[r for prev, _, ceil_r, _ in positions for r in (prev + 1, ceil_r + 1)],
        alphas=[a for _ in positions for a in (alpha_lo, alpha_hi)])
    kth = np.unique(np.array([0, n - 1, *(i for prev, nxt, _, _ in positions for i in (prev, nxt)),
                              *ci_ranks], dtype=np.intp))
    part = x if owned else x.copy()
    part.partition(kth)
    order_stat = dict(zip(kth.tolist(), part[kth].tolist(), strict=True))
    lo_val, hi_val = order_stat[0], order_stat[n - 1]

    percentiles: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    for i, ((name, _), (prev, nxt, _, gamma)) in enumerate(zip(PERCENTILES, positions, strict=True)):
        est = _numpy_lerp(order_stat[prev], order_stat[nxt], gamma)
        percentiles[name] = est
        ci[name] = (min(order_stat[ci_ranks[2 * i]], est), max(order_stat[ci_ranks[2 * i + 1]], est))

    mean, stdev = _mean_and_stdev(part, n, total, max(abs(lo_val), abs(hi_val)))
    ci["mean"] = _t_interval(mean, stdev, n, confidence)
    cv = stdev / abs(mean) if n > 1 and mean != 0 else math.nan
    return Summary(count=n, mean=mean, stdev=stdev, cv=cv, min=lo_val, max=hi_val,
                   percentiles=percentiles, ci=ci, confidence=float(confidence))


def bootstrap_ratio_of_medians(current: Sequence[float], baseline: Sequence[float], *,
                               confidence: float = 0.95, resamples: int = 2000,
                               seed: int = 0) -> tuple[float, float, float]:
    """Ratio median(current)/median(baseline) with a percentile-bootstrap CI: (point, low, high).

    Each side is resampled independently with replacement; seeded, so the same inputs give the same CI.
    Each side is sorted first, so the order in which trials were recorded cannot change the interval, and
    each side draws from its own child stream of ``seed``, so one side's size does not shift the other's
    draws. The interval is widened, if needed, to contain the point: with a few trials the percentile
    interval can miss the estimate, and a verdict must never see ``point`` outside its own CI. Resamples
    whose baseline median is 0 make the ratio unbounded; they count as -inf for the low end and +inf for
    the high end, so the interval honestly becomes unbounded instead of silently shrinking.
    """
    import numpy as np
    _check_confidence(confidence)
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    cur, _ = _as_float_array(current, "current", copy=True)
    base, _ = _as_float_array(baseline, "baseline", copy=True)
    for arr, side in ((cur, "current"), (base, "baseline")):
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(arr.sum())
        if not math.isfinite(total):
            _raise_if_nonfinite(arr, side)
    cur.sort()
    base.sort()
    med_c, med_b = float(np.median(cur)), float(np.median(base))
    if med_b == 0.0:
        raise ValueError("baseline median is 0, so the ratio median(current)/median(baseline) is "
                         "undefined; compare this metric by difference or record it in non-zero units")
    point = med_c / med_b
    if cur[0] == cur[-1] and base[0] == base[-1]:
        # Nothing to resample (one value, or all equal, on each side): every resample gives ``point``.
        return point, point, point

    rng_c, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = _bootstrap_medians(cur, int(resamples), rng_c) / _bootstrap_medians(base, int(resamples),
                                                                                    rng_b)
    pct_lo, pct_hi = 50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)
    if np.isfinite(ratios).all():
        lo, hi = (float(v) for v in np.percentile(ratios, [pct_lo, pct_hi]))
    else:  # no interpolation across infinities (inf - inf would give nan)
        undefined = np.isnan(ratios)
        lo = float(np.percentile(np.where(undefined, -np.inf, ratios), pct_lo, method="lower"))
        hi = float(np.percentile(np.where(undefined, np.inf, ratios), pct_hi, method="higher"))
    return point, min(lo, point), max(hi, point)


# --- helpers ---------------------------------------------------------------------------------------------

def _single(value: float, confidence: float) -> Summary:
    """The summary of one sample, without the bootstrap machinery (and without importing scipy)."""
    if not math.isfinite(value):
        raise ValueError(f"non-finite values in samples: {value!r} out of 1; "
                         "drop failed measurements before recording them")
    names = [*_PERCENTILE_NAMES, "mean"]
    return Summary(count=1, mean=value, stdev=math.nan, cv=math.nan, min=value, max=value,
                   percentiles={name: value for name in _PERCENTILE_NAMES},
                   ci={name: (value, value) for name in names}, confidence=float(confidence))


def _canonical(name: str) -> str:
    """Stat name as stored (``median`` -> ``p50``); KeyError listing the valid names otherwise."""
    if name not in STAT_NAMES:
        raise KeyError(f"unknown stat {name!r}; valid names: {', '.join(STAT_NAMES)}")
    return "p50" if name == "median" else name


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _as_float_array(samples: Any, what: str, copy: bool = False) -> tuple[np.ndarray, bool]:
    """1-D float64 view of ``samples`` and whether it is our own copy (safe to reorder in place).

    Numeric data only: numpy would happily parse strings into floats, which would hide a caller's bug.
    """
    import numpy as np
    raw = np.asarray(samples)
    if raw.dtype.kind not in "biufO":
        raise TypeError(f"{what} must be numeric, got dtype {raw.dtype}")
    if raw.ndim == 0:
        raise TypeError(f"{what} must be a sequence of numbers, got a scalar")
    x = np.asarray(raw, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what} is empty: at least one sample is needed")
    # Ours when converting copied it, or when ``raw`` itself was built fresh from a list. An array, memmap
    # or buffer (memoryview) is the caller's: reordering it in place would corrupt their data.
    owned = not np.may_share_memory(x, raw) or (not isinstance(samples, np.ndarray) and raw.base is None)
    if copy and not owned:
        x, owned = x.copy(), True
    return x, owned


def _raise_if_nonfinite(x: np.ndarray, what: str) -> None:
    """ValueError counting NaN and infinite values, so the caller learns how bad the data is."""
    import numpy as np
    n_nan = int(np.count_nonzero(np.isnan(x)))
    n_inf = int(np.count_nonzero(np.isinf(x)))
    if n_nan or n_inf:
        raise ValueError(f"non-finite values in {what}: {n_nan} NaN and {n_inf} infinite out of {x.size}; "
                         "drop failed measurements before recording them")


def _linear_position(n: int, percent: float) -> tuple[int, int, int, float]:
    """numpy's linear method at ``percent``: (previous index, next index, ceil index, gamma).

    Mirrors ``numpy.percentile`` arithmetic exactly (q/100, (n-1)*q, floor, clip at the top) so that
    our estimates are bit-identical to it; ``ceil index`` is the upper bracket used for the CI.
    """
    virtual = (n - 1) * (percent / 100.0)
    if virtual >= n - 1:
        return n - 1, n - 1, n - 1, virtual - math.floor(virtual)
    prev = math.floor(virtual)
    gamma = virtual - prev
    return prev, prev + 1, prev + 1 if gamma > 0 else prev, gamma


def _numpy_lerp(a: float, b: float, gamma: float) -> float:
    """numpy's ``_lerp``: the formula switches ends at gamma 0.5 for monotonicity and exact endpoints."""
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


def _bootstrap_order_stat_quantiles(n: int, ks: Sequence[int], alphas: Sequence[float]) -> list[int]:
    """0-based rank j-1 of the ``alpha`` quantile of the bootstrap k-th order statistic, for each (k, alpha).

    The quantile is the smallest j in 1..n with P(Binomial(n, j/n) >= k) >= alpha. That probability rises
    with j and is 1 at j = n, so a vectorised bisection finds it in ceil(log2 n) scipy calls.
    """
    import numpy as np
    from scipy.special import bdtrc  # imported here: scipy costs start-up time in every pytest run

    k = np.asarray(ks, dtype=np.float64)
    alpha = np.asarray(alphas, dtype=np.float64)
    lo = np.zeros(k.shape, dtype=np.int64)  # invariant: F(lo) < alpha (F(0) = 0), F(hi) >= alpha
    hi = np.full(k.shape, n, dtype=np.int64)
    while True:
        active = hi - lo > 1
        if not active.any():
            break
        mid = (lo + hi) // 2
        ok = bdtrc(k - 1, n, mid / n) >= alpha  # = P(Binomial(n, mid/n) >= k)
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid, lo)
    return cast("list[int]", (hi - 1).tolist())  # numpy stubs type tolist() loosely


def _mean_and_stdev(part: np.ndarray, n: int, total: float, max_abs: float) -> tuple[float, float]:
    """Mean and sample stdev (ddof=1), destroying ``part`` (our own copy) to avoid another allocation.

    ``total / n`` is exactly what ``np.mean`` computes. Huge magnitudes are scaled by a power of two
    first, which is exact, so that neither the sum nor the squares overflow.
    """
    import numpy as np
    exp = 0
    if max_abs > _SCALE_THRESHOLD or not math.isfinite(total):
        exp = math.frexp(max_abs)[1]  # 2**exp > max_abs, so scaled values are below 1
        part *= math.ldexp(1.0, -exp)
        mean_scaled = float(part.sum()) / n
    else:
        mean_scaled = total / n
    mean = math.ldexp(mean_scaled, exp)
    if n == 1:
        return mean, math.nan
    np.subtract(part, mean_scaled, out=part)
    np.multiply(part, part, out=part)
    return mean, math.ldexp(math.sqrt(float(part.sum()) / (n - 1)), exp)


def _t_interval(mean: float, stdev: float, n: int, confidence: float) -> tuple[float, float]:
    """Student-t interval for the mean; collapses to the mean when there is no spread to estimate."""
    if n == 1 or stdev == 0.0:
        return mean, mean
    from scipy.special import stdtrit  # imported here: scipy costs start-up time in every pytest run

    half = float(stdtrit(n - 1, (1.0 + confidence) / 2.0)) * stdev / math.sqrt(n)
    return mean - half, mean + half


def _bootstrap_medians(sorted_x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` resamples of ``sorted_x``, in chunks that bound the index matrix's size."""
    import numpy as np
    n = sorted_x.size
    if n == 1:
        return np.full(resamples, sorted_x[0])
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    out = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = np.median(sorted_x[idx], axis=1)
    return out


def _jsonable(value: float) -> float | None:
    f = float(value)
    return f if math.isfinite(f) else None


def _from_json(value: float | None) -> float:
    return math.nan if value is None else float(value)
