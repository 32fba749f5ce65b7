"""Default thread count vs every thread count on this machine (figures printed).

    DATA_MIRROR=../shared python bench/bench_threads.py [--model smollm2] [--tasks 2] [--repeats 3]

Work per setting: greedy generation (SDPA) of the first N MBPP tasks, then the gradient pass of
the ten methods (:func:`common.internals.internals`, attention rows and both targets). Each
thread count from 1 to the usable CPUs is timed, and the default of
:func:`common.threads.default_threads` (decided once, at start, from cores and load), in
interleaved repeats; the median per setting and the default's ratio to the best are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from bench_overhead import load, ours  # noqa: E402

from common import dataset, threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    default = threads.default_threads()  # decided before this bench loads the machine itself
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    settings = sorted(set(range(1, logical + 1)))
    print(f"# torch {torch.__version__}, {logical} usable CPUs, {threads.usable_cores()} physical cores, "
          f"load average {os.getloadavg()[0]:.2f} at start; default {default} thread(s)")
    lm = load(args.model, "cpu", None)
    tasks = dataset.load().select("mbpp", args.tasks)
    ours(lm, tasks[0], "cpu")  # warm-up
    times: dict[str, list[float]] = {}
    labels = [(f"{n} thread{'s' if n > 1 else ''}", n) for n in settings]
    labels.append((f"default ({default})", default))
    for _ in range(args.repeats):
        for label, n in labels:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            for task in tasks:
                ours(lm, task, "cpu")
            times.setdefault(label, []).append(time.perf_counter() - t0)
            print(f"  {label}: {times[label][-1]:.2f} s", flush=True)
    med = {label: statistics.median(v) for label, v in times.items()}
    best = min(med.values())
    for label, _ in labels:
        print(f"{label:<14} median {med[label]:7.2f} s  ({', '.join(f'{x:.2f}' for x in times[label])}) "
              f"= {med[label] / best:.2f}x the best")
    print(f"default / best: {med[labels[-1][0]] / best:.2f}x (target <= 1.2x); "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
