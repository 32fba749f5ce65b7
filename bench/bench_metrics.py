"""Time the full per-model table (6 models, 12 methods (2 for GPT-4), k = 5/10/20, both
modes) once results are loaded: the vectorised scorer against the per-prompt reference.

    python bench/bench_metrics.py            # both, the reference over every cell (~1 min)
    python bench/bench_metrics.py --quick    # the reference on every 10th cell, extrapolated

First, end to end in a fresh process (median of ``--repeat``): load the 62 published results
(from the located-units cache, which the first load writes) and score Table 2 and Table 3 with
the baselines, per-benchmark rows, label coverage and per-prompt statistics, without intervals
(``tables.compute(resamples=0)``; target <= 1 s), in paper mode (the published table) and in
both modes, the imports timed apart.

Then the whole table with 95% bootstrap intervals (``tables.compute``: table2 + table3, both
modes, baselines, ``--resamples`` resamples; target < 30 s on one core) and the paired tests
of the findings (``tables.findings_tests``). Run with one BLAS thread for one-core figures:
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/bench_metrics.py --quick``.

Figures are printed, not asserted; the ratio is measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import fetch, metrics, tables  # noqa: E402
from common.reference import score_reference  # noqa: E402

END_TO_END = """
import json, sys, time
t0 = time.perf_counter()
from common import tables
t1 = time.perf_counter()
entries = tables.load_entries(modes=MODES)
t2 = time.perf_counter()
t = tables.compute(entries, resamples=0)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "score": t3 - t2, "cells": len(t.table2)}))
"""


def end_to_end(repeat: int, modes: tuple[str, ...]) -> dict:
    """Fresh-process timings of :data:`END_TO_END` (the first run, not counted, warms caches)."""
    import json
    import statistics
    import subprocess

    root = Path(__file__).resolve().parent.parent
    code = END_TO_END.replace("MODES", repr(modes))
    runs = []
    for i in range(repeat + 1):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                             text=True, check=True).stdout
        if i:
            runs.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    mirror = os.environ.get("DATA_MIRROR") or None
    fetch.fetch(mirror=mirror, progress=False)
    for modes in (("paper",), tables.MODES):
        e2e = end_to_end(args.repeat, modes)
        print(f"end to end, fresh process (median of {args.repeat}): load the 62 published results "
              f"{e2e['load']:.2f} s + score {' and '.join(modes)} mode{'s' * (len(modes) > 1)} with "
              f"baselines, per-benchmark rows, label coverage ({e2e['cells']:.0f} cells) "
              f"{e2e['score']:.2f} s = {e2e['load'] + e2e['score']:.2f} s (target <= 1 s); "
              f"imports {e2e['import']:.2f} s")

    t0 = time.perf_counter()
    entries = tables.load_entries()
    load_s = time.perf_counter() - t0
    labels = {m: tables.labels_of(m, mirror) for m in tables.MODES}
    n_cells = sum(len(es) for es in entries.values()) * len(metrics.KS)

    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for mode, es in entries.items():
            index = labels[mode][1]
            for e in es:
                scorer = metrics.Scorer(e.ranked, index)
                for k in metrics.KS:
                    scorer.score(k)
        best = min(best, time.perf_counter() - t0)

    step = 10 if args.quick else 1
    done, t_ref = 0, 0.0
    for mode, es in entries.items():
        spans = labels[mode][0].spans()
        for i, e in enumerate(es):
            if i % step:
                continue
            r = e.ranked
            units = {}
            for j, p in enumerate(r.prompts):
                sel = r.owner == j
                units[p] = [(tuple(s), 0.0) for s in r.spans[sel]]
                ranks = r.rank[sel]
                # scores that reproduce the stored rank order (the reference re-sorts them)
                units[p] = [(u, -float(rk)) for (u, _), rk in zip(units[p], ranks)]
            t0 = time.perf_counter()
            for k in metrics.KS:
                score_reference(units, spans, k)
            t_ref += time.perf_counter() - t0
            done += len(metrics.KS)
    ref_full = t_ref * n_cells / done

    print(f"results loaded (62 files, located once per alignment): {load_s:.2f} s")
    print(f"cells scored: {n_cells} (mode x model x method x k)")
    print(f"vectorised scorer, full table both modes: {best:.3f} s (best of {args.repeat})")
    print(f"per-prompt reference: {ref_full:.1f} s"
          + (f" (extrapolated from {done} cells)" if args.quick else ""))
    print(f"speed-up: {ref_full / best:.0f}x")

    t0 = time.perf_counter()
    tabs = tables.compute(entries, mirror=mirror, benchmarks=False, with_baselines=False, resamples=0)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tabs = tables.compute(entries, mirror=mirror, benchmarks=False, resamples=args.resamples)
    boot_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = tables.findings_tests(tabs)
    findings_s = time.perf_counter() - t0
    print(f"table2 + table3, both modes, no intervals, no baselines: {plain_s:.2f} s")
    print(f"table2 + table3 with {args.resamples} bootstrap resamples per cell and the three "
          f"baselines ({len(tabs.table2)} cells): {boot_s:.2f} s (target < 30 s)")
    print(f"findings: paired permutation tests + bootstrap intervals, "
          f"{len(found)} rows: {findings_s:.2f} s")


if __name__ == "__main__":
    main()
