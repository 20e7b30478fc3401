"""Exact nearest neighbours with numpy, and recall@k of what a vector database returned.

Why exact ground truth computed here: a vector database's top-k is approximate (HNSW, IVF); recall@k is
the only number that says how approximate, and it is only as good as the truth it is measured against.
The truth is brute force — every query against every vector — so it must stay in memory on a benchmark
client: distances are computed in blocks of queries × vectors (``budget_elems`` floats at a time, 4 M by
default ≈ 16 MiB of float32), keeping a running top-k per query. 100 k vectors × 1 k queries never holds
the full 10⁸-element distance matrix. float32 input stays float32 (half the memory and twice the speed of
float64; ties that rounding could reorder are absorbed by the tie rule below).

Metrics match the collection's distance:

* ``cosine`` — 1 − cos(q, x) (vectors normalised first; Chroma's ``cosine``, Qdrant's ``Cosine``).
* ``l2`` — squared Euclidean distance (same order as Euclidean; Chroma's ``l2``, Qdrant's ``Euclid``).
* ``ip`` — −q·x (largest inner product first; Chroma's ``ip``, Qdrant's ``Dot``).

Recall decisions (pinned, tested):

* recall@k of one query = |found[:k] ∩ truth| / min(k, n_vectors). A returned id counts as a hit also when
  its exact distance ties the k-th true distance (relative tolerance ``tie_rtol``): with ties the "true"
  top-k is not unique, and a database that picked the other tied vector is not wrong.
* A query whose answer was an **empty list** scores 0 and is counted in ``empty_results``: the server
  answered, and an empty answer is a wrong answer (an empty collection, a filter bug) that an SLO such as
  ``recall_at_k >= 0.9`` must catch, not hide. ``all_empty`` flags the case where *every* answer was empty.
* A query that **failed** (``None``: error, timeout) is left out of the mean and counted in ``failed``; it is
  already counted in the run's error rate, and scoring it 0 would mix "slow server" into "bad index".
* When no query has an answer at all (every one failed, or there were none), recall is undefined and
  :class:`RecallError` is raised — recording 0 there would claim a measurement that was never made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pytest_hwbench.errors import HwbenchError, HwbenchInputError

Metric = Literal["cosine", "l2", "ip"]
METRICS: tuple[str, ...] = ("cosine", "l2", "ip")
DEFAULT_BUDGET_ELEMS = 1 << 22


class RecallError(HwbenchError):
    """recall@k cannot be computed from what was given (no answered query, shapes that do not match)."""


@dataclass(frozen=True)
class GroundTruth:
    """Exact top-k per query: ``ids[q]`` nearest first, ``distances[q]`` in the metric's distance."""

    ids: np.ndarray
    distances: np.ndarray
    metric: str
    k: int
    n_vectors: int


@dataclass
class RecallResult:
    """recall@k of a run, with the evidence needed to trust (or distrust) it."""

    value: float
    k: int
    per_query: np.ndarray = field(repr=False)
    queries: int
    answered: int
    failed: int
    empty_results: int
    all_empty: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for ``hwbench.extra`` (the per-query array stays out: it can be long)."""
        return {"recall_at_k": self.value, "k": self.k, "queries": self.queries, "answered": self.answered,
                "failed": self.failed, "empty_results": self.empty_results, "all_empty": self.all_empty}


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise HwbenchInputError(f"unknown distance metric {metric!r}", field="metric",
                                fix="use one of " + ", ".join(METRICS))
    return metric


def _normalise(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, np.finfo(a.dtype).tiny)


def _prepare(a: np.ndarray, metric: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise HwbenchInputError(f"expected a 2-D array of vectors, got shape {a.shape}", field="vectors",
                                fix="pass an (n, dim) array")
    return _normalise(a) if metric == "cosine" else a


def _block_distances(q: np.ndarray, x: np.ndarray, x_sq: np.ndarray | None, metric: str) -> np.ndarray:
    """Distances of a query block against a vector block, in the metric's distance (smaller is nearer)."""
    dots = q @ x.T
    if metric == "cosine":
        return 1.0 - dots
    if metric == "ip":
        return -dots
    assert x_sq is not None
    # |q - x|² = |q|² - 2 q·x + |x|², clipped at 0 (rounding can make an exact match slightly negative)
    return np.maximum((q * q).sum(axis=1)[:, None] - 2.0 * dots + x_sq[None, :], 0.0)


def pairwise_distances(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Distances of every query to every vector (small inputs only: tests and tie checks)."""
    metric = _check_metric(metric)
    q, x = _prepare(queries, metric), _prepare(vectors, metric)
    return _block_distances(q, x, (x * x).sum(axis=1) if metric == "l2" else None, metric)


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", *,
               budget_elems: int = DEFAULT_BUDGET_ELEMS) -> GroundTruth:
    """Exact top-``k`` of every query by brute force, in bounded memory.

    Blocks of ``qb`` queries × ``vb`` vectors (``qb * vb <= budget_elems``) are scored; each query keeps a
    running top-k merged with the block's own top-k (``argpartition``, then a stable sort of the survivors
    by distance and then by id, so the order of ties is deterministic: lower id first).
    """
    metric = _check_metric(metric)
    x = _prepare(vectors, metric)
    q = _prepare(queries, metric)
    if x.shape[0] == 0:
        raise RecallError("no vectors to search: exact top-k of an empty collection is undefined")
    if q.shape[1] != x.shape[1]:
        raise HwbenchInputError(f"queries have dimension {q.shape[1]}, vectors {x.shape[1]}", field="queries",
                                fix="draw queries with the collection's dimension")
    if k < 1:
        raise HwbenchInputError(f"k must be >= 1, got {k}", field="k", fix="ask for at least one neighbour")
    n, nq = x.shape[0], q.shape[0]
    kk = min(k, n)
    vb = max(kk, min(n, budget_elems // max(1, min(nq, 64))))
    qb = max(1, min(nq, budget_elems // vb))
    x_sq = (x * x).sum(axis=1) if metric == "l2" else None
    out_ids = np.empty((nq, kk), dtype=np.int64)
    out_d = np.empty((nq, kk), dtype=np.float64)
    for q0 in range(0, nq, qb):
        qs = q[q0:q0 + qb]
        best_d = np.full((qs.shape[0], 0), np.inf)
        best_i = np.zeros((qs.shape[0], 0), dtype=np.int64)
        for v0 in range(0, n, vb):
            d = _block_distances(qs, x[v0:v0 + vb], None if x_sq is None else x_sq[v0:v0 + vb], metric)
            if d.shape[1] > kk:  # the block's own top-k first: the merge then only touches 2k columns
                ids = np.argpartition(d, kk - 1, axis=1)[:, :kk]
                d = np.take_along_axis(d, ids, axis=1)
                ids += v0
            else:
                ids = np.broadcast_to(np.arange(v0, v0 + d.shape[1], dtype=np.int64), d.shape)
            cand_d = np.concatenate([best_d, d.astype(np.float64)], axis=1)
            cand_i = np.concatenate([best_i, ids], axis=1)
            if cand_d.shape[1] > kk:
                part = np.argpartition(cand_d, kk - 1, axis=1)[:, :kk]
                cand_d = np.take_along_axis(cand_d, part, axis=1)
                cand_i = np.take_along_axis(cand_i, part, axis=1)
            best_d, best_i = cand_d, cand_i
        order = np.lexsort((best_i, best_d), axis=1)
        out_d[q0:q0 + qb] = np.take_along_axis(best_d, order, axis=1)
        out_ids[q0:q0 + qb] = np.take_along_axis(best_i, order, axis=1)
    return GroundTruth(ids=out_ids, distances=out_d, metric=metric, k=kk, n_vectors=n)


def recall_at_k(found: Sequence[Sequence[int] | np.ndarray | None], truth: GroundTruth, k: int | None = None,
                *, vectors: np.ndarray | None = None, queries: np.ndarray | None = None,
                tie_rtol: float = 1e-6) -> RecallResult:
    """recall@k of ``found`` (one id list per query, ``None`` for a failed query) against ``truth``.

    With ``vectors`` and ``queries`` given, a returned id outside the exact top-k still counts when its
    distance ties the k-th true distance (see the module docstring); without them, ids are compared as sets.
    """
    k = truth.k if k is None else min(k, truth.k)
    if k < 1:
        raise RecallError(f"k must be >= 1, got {k}")
    if len(found) != truth.ids.shape[0]:
        raise RecallError(f"{len(found)} answers for {truth.ids.shape[0]} ground-truth queries: they must "
                          "match one to one, in query order")
    tie_check = vectors is not None and queries is not None
    if tie_check:
        x = _prepare(np.asarray(vectors), truth.metric)
        qs = _prepare(np.asarray(queries), truth.metric)
    per_query = np.full(len(found), np.nan)
    failed = empty = 0
    for qi, ans in enumerate(found):
        if ans is None:
            failed += 1
            continue
        got = np.asarray(ans, dtype=np.int64).reshape(-1)[:k]
        if got.size == 0:
            empty += 1
            per_query[qi] = 0.0
            continue
        true_ids = truth.ids[qi, :k]
        hit = np.isin(got, true_ids)
        if tie_check and not hit.all():
            kth = truth.distances[qi, k - 1]
            cand = got[~hit]
            valid = (cand >= 0) & (cand < x.shape[0])
            if valid.any():
                d = _block_distances(qs[qi:qi + 1], x[cand[valid]],
                                     (x[cand[valid]] ** 2).sum(axis=1) if truth.metric == "l2" else None,
                                     truth.metric)[0]
                tol = tie_rtol * max(1.0, abs(kth))
                extra = np.zeros(cand.size, dtype=bool)
                extra[valid] = d <= kth + tol
                hit[~hit] = extra
        # duplicates in an answer count once
        per_query[qi] = len(set(got[hit].tolist())) / k
    answered = len(found) - failed
    if answered == 0:
        raise RecallError(f"recall@{k} is undefined: none of the {len(found)} queries was answered "
                          "(all failed); see the run's error_rate and error classes")
    value = float(np.nanmean(per_query))
    return RecallResult(value=value if math.isfinite(value) else 0.0, k=k, per_query=per_query,
                        queries=len(found), answered=answered, failed=failed, empty_results=empty,
                        all_empty=empty == answered)


__all__ = ["METRICS", "GroundTruth", "RecallError", "RecallResult", "exact_topk", "pairwise_distances",
           "recall_at_k"]
