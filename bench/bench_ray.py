"""Tasks/s of the Ray engine at 1 and 2 workers (figures printed, not a test).

    python bench/bench_ray.py                              # tiny-gpt2, 48 MBPP tasks, the ten methods
    python bench/bench_ray.py --workers 1 2 --tasks 96 --model tiny-gpt2 --batch-size 4

Starts a local Ray cluster with as many CPUs as the most workers asked (RAY_AUTH_MODE=disabled,
Ray's files in a temporary folder), then for each worker count runs the same tasks into a fresh
result folder with a fresh in-memory generation cache (every generation made again) and prints
tasks/s of the run itself (actors started and the model loaded before the clock starts), the
ratio to one worker, the one-process engine's tasks/s for reference, and the 1-minute load
average before and after each run (the machine is shared: a busy machine lowers the ratio).
``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from attention_alignment import catalogue, ray_engine, runner  # noqa: E402
from common import backends, dataset  # noqa: E402


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-gpt2")
    p.add_argument("--tasks", type=int, default=48, help="first N MBPP tasks")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--family", default="all", help="method family (all = the ten model-internal methods)")
    p.add_argument("--batch-size", type=int, default=4, help="tasks per chunk sent to an actor")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    methods = catalogue.select(family=a.family)
    tasks = dataset.load("corrected").select("mbpp", a.tasks)
    options = {"batch_size": a.batch_size, "cache_path": None}
    out = {"model": a.model, "tasks": len(tasks), "methods": len(methods), "batch_size": a.batch_size,
           "cpu_cores": os.cpu_count(), "cpu": platform.machine(), "torch_threads": 1, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        before = load1()
        start = time.perf_counter()
        backend = backends.build(a.model, **options)
        summary = runner.run(methods, backend, tasks, tmp / "local", progress=False)
        out["runs"]["local"] = {"tasks_per_s": round(summary.tasks_per_second, 3),
                                "seconds": round(time.perf_counter() - start, 2),
                                "load_before": before, "load_after": load1()}
        print(f"one process : {summary.tasks_per_second:6.2f} tasks/s  (load {before} -> {load1()})",
              flush=True)
        t0 = time.perf_counter()
        ray_engine.connect(num_cpus=max(a.workers), include_dashboard=False, log_to_driver=False,
                           _temp_dir=str(tmp / "ray"))
        out["ray_start_s"] = round(time.perf_counter() - t0, 2)
        try:
            for w in a.workers:
                before = load1()
                t0 = time.perf_counter()
                s = ray_engine.run(methods, a.model, options, tasks, tmp / f"ray{w}", workers=w,
                                   progress=False, threads=1)
                total = time.perf_counter() - t0
                out["runs"][f"ray{w}"] = {"workers": w, "tasks_per_s": round(s.tasks_per_second, 3),
                                          "run_seconds": round(s.seconds, 2),
                                          "with_startup_seconds": round(total, 2),
                                          "load_before": before, "load_after": load1()}
                same = all((tmp / f"ray{w}" / p.name).read_bytes() == p.read_bytes()
                           for p in (tmp / "local").glob("*.jsonl"))
                out["runs"][f"ray{w}"]["files_equal_one_process"] = same
                print(f"ray, {w} worker{'s' if w > 1 else ' '}: {s.tasks_per_second:6.2f} tasks/s  "
                      f"({s.seconds:.1f} s; {total:.1f} s with actor start-up; load {before} -> {load1()}; "
                      f"files equal to one process: {same})", flush=True)
        finally:
            import ray
            ray.shutdown()
    runs = out["runs"]
    if "ray1" in runs:
        for w in a.workers[1:]:
            ratio = runs[f"ray{w}"]["tasks_per_s"] / runs["ray1"]["tasks_per_s"]
            out[f"ratio_{w}_to_1"] = round(ratio, 2)
            print(f"ratio {w} workers / 1 worker: {ratio:.2f}x (on {os.cpu_count()} cores, "
                  f"1-minute load average now {load1()})")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
