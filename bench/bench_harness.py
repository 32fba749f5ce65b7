"""Throughput of the execution harness on the benchmarks' own reference solutions.

Runs all 164 HumanEval canonical solutions (prompt + body) and all 974 MBPP reference programs
against their tests in the sandbox and prints executions per second and how many pass.
Reference solutions that fail are listed: they are facts about the benchmark data or about
the sandbox (e.g. a module it cannot import, or a time limit too tight for this
machine), worth knowing before reading pass rates.

    DATA_MIRROR=../shared python bench/bench_harness.py [--workers N] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.execution import Sandbox, reference_job  # noqa: E402
from common import dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    ds = dataset.load("corrected")
    print(f"{os.cpu_count()} CPUs, {args.workers} sandbox workers, timeout {args.timeout} s")
    with Sandbox(workers=args.workers, timeout=args.timeout) as sb:
        print(f"sandbox layers: {sb.layers()}")
        sb.run(reference_job(ds.tasks[0]))  # start-up of the workers is not throughput
        for bench in dataset.BENCHMARKS:
            tasks = ds.select(bench)
            start = time.perf_counter()
            outcomes = list(sb.run_many(reference_job(t) for t in tasks))
            elapsed = time.perf_counter() - start
            counts = Counter(o.status for o in outcomes)
            print(f"{bench:<10} {len(tasks):>4} reference solutions in {elapsed:6.2f} s = "
                  f"{len(tasks) / elapsed:7.1f} executions/s; passed {counts['passed']}/{len(tasks)} "
                  f"({', '.join(f'{s} {n}' for s, n in sorted(counts.items()) if s != 'passed')})")
            for t, o in zip(tasks, outcomes):
                if not o.passed:
                    print(f"    {t.task_id}: {o.status}: {o.detail[:150]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
