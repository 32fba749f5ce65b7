"""Per-prompt pure-Python scorer, written straight from study.md section 4.

Slow (tens of seconds for a full table) and kept only as the reference that the vectorised
:mod:`common.metrics` is tested and benchmarked against. Alpha comes from the ``krippendorff``
package here, so the closed form in ``metrics`` is checked against it too.
"""

from __future__ import annotations

import krippendorff


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _touches(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[1] > b[0] and a[0] < b[1]


def score_reference(result: dict, labels: dict, k: int) -> tuple[float, float, float, float]:
    """``result``: prompt -> list of (span, score) in prompt order; ``labels``: prompt -> spans.

    Returns (precision, recall, f1, alpha).
    """
    human_codes, model_codes = [], []
    p_sum = r_sum = 0.0
    n_top = n_human = 0
    for prompt, units in result.items():
        human = [tuple(h) for h in labels[prompt]]
        ranked = sorted(range(len(units)), key=lambda i: -units[i][1])  # stable: prompt order
        top = [tuple(units[i][0]) for i in ranked[:k]]
        for span, _ in units:
            human_codes.append(int(any(_touches(tuple(span), h) for h in human)))
            model_codes.append(int(any(_touches(tuple(span), m) for m in top)))
        for h in set(human):
            for m in set(top):
                if m[1] > m[0]:
                    p_sum += _overlap(h, m) / (m[1] - m[0])
                if h[1] > h[0]:
                    r_sum += _overlap(h, m) / (h[1] - h[0])
        n_top += len(top)
        n_human += len(human)
    precision = p_sum / n_top if n_top else 0.0
    recall = r_sum / n_human if n_human else 0.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    alpha = krippendorff.alpha(reliability_data=[human_codes, model_codes],
                               level_of_measurement="nominal")
    return precision, recall, f1, float(alpha)
