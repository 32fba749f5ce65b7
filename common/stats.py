"""Uncertainty and significance for the alignment tables, vectorised over resamples.

Every metric of :mod:`common.metrics` is a function of seven sums over prompts
(:data:`common.metrics.STAT_FIELDS`): precision = p_sum / n_top, recall = r_sum / n_human,
alpha = 1 - (n - 1) D / (n0 n1) with n = 2 units. A bootstrap over prompts is therefore a
``(B, prompts)`` matrix of resample counts times the ``(prompts, 7)`` per-prompt statistics;
a paired bootstrap (several methods or models on the same resampled prompts) uses one matrix
for all of them.

* :func:`bootstrap_weights`, :func:`metrics_of`, :func:`interval`: percentile intervals;
* :func:`permutation_test`: paired permutation over prompts (method labels exchanged inside
  each prompt, for every model at once);
* :func:`holm`: Holm's step-down adjustment;
* :func:`point_biserial`, :func:`auc`, :func:`by_stratum`: accuracy against alignment;
* :func:`mh_risk_difference`, :func:`stratified_difference`: a rate in one group against the
  same rate in a control group, adjusted for strata (Mantel-Haenszel weights), with a
  stratified bootstrap interval and a permutation p-value (group labels exchanged inside each
  stratum).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 20240601
LEVEL = 0.95


def bootstrap_weights(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                      ) -> np.ndarray:
    """``(resamples, n)`` float array: how often each of ``n`` prompts is drawn in each
    resample (n draws with replacement). Same seed, same matrix."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    flat = (draws + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def metrics_of(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and alpha from summed statistics ``(..., 7)`` (any leading
    shape); the same conventions as :mod:`common.metrics` (0 for an empty denominator, alpha
    undefined (NaN) when only one code occurs)."""
    sums = np.asarray(sums, dtype=np.float64)
    p_sum, n_top, r_sum, n_human, units, disagree, n1 = np.moveaxis(sums, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_top > 0, p_sum / n_top, 0.0)
        recall = np.where(n_human > 0, r_sum / n_human, 0.0)
        pr = precision + recall
        f1 = np.where(pr > 0, 2 * precision * recall / pr, 0.0)
        n = 2 * units
        n0 = n - n1
        alpha = np.where((n0 > 0) & (n1 > 0), 1.0 - (n - 1) * disagree / (n0 * n1), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "alpha": alpha}


def interval(samples: np.ndarray, level: float = LEVEL, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along ``axis`` (NaN resamples ignored; all-NaN gives NaN)."""
    q = [(1 - level) / 2, (1 + level) / 2]
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if np.isnan(samples).any():
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanquantile(samples, q, axis=axis)
        else:
            lo, hi = np.quantile(samples, q, axis=axis)
    return lo, hi


def bootstrap_metrics(stats: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Resampled metrics: ``stats`` ``(prompts, ..., 7)``, ``weights`` ``(B, prompts)`` ->
    each metric ``(B, ...)``."""
    stats = np.asarray(stats, dtype=np.float64)
    flat = stats.reshape(stats.shape[0], -1)
    sums = (weights @ flat).reshape((weights.shape[0],) + stats.shape[1:])
    return metrics_of(sums)


def pvalue_two_sided(null: np.ndarray, observed: float) -> float:
    """(1 + #|null| >= |observed|) / (1 + draws); a tiny tolerance absorbs float noise so an
    exact tie counts as a tie."""
    null = np.asarray(null, dtype=np.float64)
    tol = 1e-12 * max(1.0, abs(observed))
    hits = int(np.sum(np.abs(null) >= abs(observed) - tol))
    return (1 + hits) / (1 + len(null))


def permutation_test(stats: np.ndarray, effect: Callable[[dict[str, np.ndarray]], np.ndarray],
                     blocks: Sequence[Sequence[int]], permutations: int = 2000,
                     seed: int = DEFAULT_SEED, chunk: int = 250) -> tuple[float, float]:
    """Paired permutation test over prompts.

    ``stats``: ``(methods, prompts, ..., 7)`` per-prompt statistics (trailing axes, e.g.
    models, are carried along). Under the null the method labels inside each block (e.g.
    ``[[0, 1]]`` for a pair, ``[[0, 2], [1, 3]]`` for two pairs) are exchangeable, so each
    permutation draws, per prompt and block, a random order of the block's methods (one draw
    for every trailing model: the prompt is the unit). ``effect`` maps the metrics of summed
    statistics, each ``(R, methods, ...)``, to ``(R,)`` effects.

    Returns ``(observed effect, two-sided p)``, arrays when ``effect`` gives ``(R, E)``
    (several effects from the same permutations); identical inputs give p = 1.
    """
    stats = np.asarray(stats, dtype=np.float64)
    m, n = stats.shape[:2]
    rest = stats.shape[2:]
    observed = np.asarray(effect(metrics_of(stats.sum(axis=1)[None])), dtype=np.float64)[0]
    flat = stats.reshape(m, n, -1)
    total = flat.sum(axis=1)
    rng = np.random.default_rng(seed)
    blocks = [np.asarray(b) for b in blocks]
    pairs = all(len(b) == 2 for b in blocks)
    null = []
    for start in range(0, permutations, chunk):
        r = min(chunk, permutations - start)
        if pairs:  # a pair is swapped or not: slot a gets a's sums + swapped (b - a)
            sums = np.broadcast_to(total, (r,) + total.shape).copy()
            for a, b in blocks:
                moved = (rng.random((r, n)) < 0.5).astype(np.float64) @ (flat[b] - flat[a])
                sums[:, a] += moved
                sums[:, b] -= moved
        else:
            assign = np.broadcast_to(np.arange(m), (r, n, m)).copy()  # per prompt: slot -> method
            for block in blocks:
                assign[:, :, block] = rng.permuted(np.broadcast_to(block, (r, n, len(block))), axis=2)
            # slot sums as one-hot matrix products: far faster than gathering (r, n, m, F)
            by_slot = assign.transpose(0, 2, 1)
            sums = np.zeros((r, m, flat.shape[2]))
            for i in range(m):
                sums += (by_slot == i).astype(np.float64) @ flat[i]
        null.append(np.asarray(effect(metrics_of(sums.reshape((r, m) + rest))), dtype=np.float64))
    null = np.concatenate(null)
    if observed.ndim == 0:
        return float(observed), pvalue_two_sided(null, float(observed))
    return observed, np.array([pvalue_two_sided(null[:, j], float(observed[j]))
                               for j in range(observed.shape[0])])


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1; NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if not len(ok):
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def point_biserial(score: np.ndarray, passed: np.ndarray) -> float:
    """Pearson correlation between a continuous score and a 0/1 outcome (NaN if either is
    constant)."""
    x = np.asarray(score, dtype=np.float64)
    y = np.asarray(passed, dtype=np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def auc(score: np.ndarray, passed: np.ndarray) -> float:
    """P(score of a passing task > score of a failing one), ties counted half (Mann-Whitney)."""
    x = np.asarray(score, dtype=np.float64)
    y = np.asarray(passed, dtype=bool)
    pos, neg = x[y], x[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = pd.Series(np.concatenate([pos, neg])).rank(method="average").to_numpy()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _rowwise_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair (NaN where a row is constant)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


def _rowwise_auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row (NaN where a row has one class only)."""
    from scipy.stats import rankdata

    ranks = rankdata(x, axis=1)
    pos = y.sum(axis=1)
    neg = y.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (ranks * y).sum(axis=1) - pos * (pos + 1) / 2
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def by_stratum(score: np.ndarray, passed: np.ndarray, stratum: np.ndarray,
               resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
               level: float = LEVEL) -> pd.DataFrame:
    """Per stratum (e.g. benchmark): tasks, pass rate, mean score, point-biserial r and AUC
    of ``score`` against ``passed``, each statistic with a percentile bootstrap interval over
    the stratum's tasks (resampled inside the stratum). Pooled rows are deliberately absent:
    strata differ in both pass rate and score (Simpson's paradox)."""
    score = np.asarray(score, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    stratum = np.asarray(stratum, dtype=object)
    if not (len(score) == len(passed) == len(stratum)):
        raise ValueError("score, passed and stratum must have the same length")
    rows = []
    for i, s in enumerate(sorted(set(stratum))):
        x, y = score[stratum == s], passed[stratum == s]
        rng = np.random.default_rng(seed + i)
        idx = rng.integers(0, len(x), size=(resamples, len(x)))
        r_lo, r_hi = interval(_rowwise_r(x[idx], y[idx].astype(np.float64)), level)
        a_lo, a_hi = interval(_rowwise_auc(x[idx], y[idx].astype(np.float64)), level)
        rows.append({"stratum": s, "n_tasks": len(x), "pass_rate": float(y.mean()),
                     "mean_score": float(x.mean()), "r_pb": point_biserial(x, y),
                     "r_pb_lo": float(r_lo), "r_pb_hi": float(r_hi), "auc": auc(x, y),
                     "auc_lo": float(a_lo), "auc_hi": float(a_hi)})
    return pd.DataFrame(rows)


def mh_risk_difference(y: np.ndarray, group: np.ndarray, stratum: np.ndarray) -> float:
    """Mantel-Haenszel risk difference of a 0/1 outcome ``y`` between ``group`` True and False:
    sum_s w_s (p1_s - p0_s) / sum_s w_s with w_s = n1_s n0_s / (n1_s + n0_s). Strata with one
    group only carry no weight; NaN when none has both."""
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(group, dtype=bool)
    _, s = np.unique(np.asarray(stratum), return_inverse=True)
    return float(_mh_rows(y[None], g[None], s, int(s.max()) + 1 if len(s) else 0)[0])


def _mh_rows(y: np.ndarray, g: np.ndarray, s: np.ndarray, n_strata: int) -> np.ndarray:
    """MH risk difference of each row of ``y`` (R, n) with groups ``g`` (R, n) or (1, n);
    ``s``: stratum index per unit (n,)."""
    onehot = np.zeros((len(s), n_strata))
    onehot[np.arange(len(s)), s] = 1.0
    g = np.broadcast_to(g, y.shape).astype(np.float64)
    n1, n0 = g @ onehot, (1.0 - g) @ onehot
    x1, x0 = (y * g) @ onehot, (y * (1.0 - g)) @ onehot
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((n1 > 0) & (n0 > 0), n1 * n0 / (n1 + n0), 0.0)
        d = np.where(w > 0, x1 / np.where(n1 > 0, n1, 1) - x0 / np.where(n0 > 0, n0, 1), 0.0)
        wsum = w.sum(axis=1)
        return np.where(wsum > 0, (w * d).sum(axis=1) / np.where(wsum > 0, wsum, 1), np.nan)


def stratified_difference(y, group, stratum, resamples: int = DEFAULT_RESAMPLES,
                          permutations: int = 2000, seed: int = DEFAULT_SEED,
                          level: float = LEVEL) -> dict:
    """A rate in ``group`` True (e.g. incorrect code) against the same rate in the control
    (``group`` False), adjusted for ``stratum`` (e.g. benchmark x number of keywords).

    Returns ``n1``, ``n0``, the raw rates ``rate1``/``rate0``, the Mantel-Haenszel risk
    difference ``diff`` with a percentile interval ``lo``/``hi`` from a bootstrap that
    resamples units inside each stratum and group, and a two-sided permutation ``p`` (group
    labels shuffled inside each stratum: the null of no difference within strata). NaN
    difference and p = 1 when no stratum holds both groups."""
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(group, dtype=bool)
    stratum = np.asarray(stratum)
    if not (len(y) == len(g) == len(stratum)):
        raise ValueError("y, group and stratum must have the same length")
    _, s = (np.unique(stratum, return_inverse=True) if len(stratum)
            else (np.array([]), np.zeros(0, dtype=np.int64)))
    k = int(s.max()) + 1 if len(s) else 0
    out = {"n1": int(g.sum()), "n0": int((~g).sum()),
           "rate1": float(y[g].mean()) if g.any() else float("nan"),
           "rate0": float(y[~g].mean()) if (~g).any() else float("nan")}
    diff = float(_mh_rows(y[None], g[None], s, k)[0]) if len(y) else float("nan")
    if np.isnan(diff):
        return {**out, "diff": diff, "lo": float("nan"), "hi": float("nan"), "p": 1.0}
    rng = np.random.default_rng(seed)
    # bootstrap: indices drawn inside each (stratum, group) cell
    idx = np.empty((resamples, len(y)), dtype=np.int64)
    for cell in set(zip(s.tolist(), g.tolist())):
        members = np.flatnonzero((s == cell[0]) & (g == cell[1]))
        idx[:, members] = members[rng.integers(0, len(members), size=(resamples, len(members)))]
    boot = _mh_rows(y[idx], g[None], s, k)
    lo, hi = interval(boot, level)
    # permutation: group labels shuffled inside each stratum
    perm_g = np.broadcast_to(g, (permutations, len(g))).copy()
    for j in range(k):
        members = np.flatnonzero(s == j)
        perm_g[:, members] = rng.permuted(perm_g[:, members], axis=1)
    null = _mh_rows(np.broadcast_to(y, perm_g.shape), perm_g, s, k)
    return {**out, "diff": diff, "lo": float(lo), "hi": float(hi), "p": pvalue_two_sided(null, diff)}
