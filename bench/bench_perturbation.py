"""Perturbation benchmarks: throughput of batched vs one-at-a-time generation, and model
generations per task for each method against the paper's count.

    python bench/bench_perturbation.py                       # tiny random model + SmolLM2, CPU
    python bench/bench_perturbation.py --device cuda --models tiny,smollm2 --batch-size 32

Throughput: the original and BERT-masked prompts of the first ``--tasks`` MBPP tasks (the real
workload of ``bert_perturbation``) are generated greedily with each task's budget, once with
``batch_size=1`` and once batched; the outputs must be identical. No generation cache is used,
so the timings are of the model. Counts: every method is run over ``--count-tasks`` tasks of
each benchmark with a model-free stand-in generator (the count of distinct prompts does not
depend on what the model writes for BERT masking and SHAP's kernel mode).

Writes a JSON summary to ``--out`` (default ``bench/results/perturbation_<device>.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import dataset, models  # noqa: E402
from common.atomic import write_text  # noqa: E402
from common.code_units import nltk_words, perturbation_units  # noqa: E402
from perturbation_based.bert_masking import BertFiller, BertMasking, perturbed_prompts  # noqa: E402
from perturbation_based.shap_method import ShapKernel, ShapPartition  # noqa: E402


def load(name: str, device: str):
    if name == "tiny":
        from common.tiny import tiny_model
        lm = tiny_model("codegen")
        lm.model.to(device)
        lm.device = device
        return lm
    return models.load_model(name, device=device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def throughput(lm, tasks, filler, batch_size: int, device: str, cap: int | None = None) -> dict:
    jobs = []
    for t in tasks:
        spans = perturbation_units(t.prompt, t.region)
        _, prompts = perturbed_prompts(t.prompt, t.model_prompt, spans, filler, t.region)
        budget = models.generation_budget(lm, t.reference)
        jobs.append(([t.model_prompt, *prompts], min(budget, cap) if cap else budget))
    n = sum(len(p) for p, _ in jobs)
    models.generate(lm, [jobs[0][0][0]], 2)  # warm-up: first-call allocations are not the method's
    sync(device)
    t0 = time.perf_counter()
    single = [models.generate(lm, [p], budget, batch_size=1)[0].text for ps, budget in jobs for p in ps]
    sync(device)
    t1 = time.perf_counter()
    batched = [g.text for ps, budget in jobs for g in models.generate(lm, ps, budget, batch_size=batch_size)]
    sync(device)
    t2 = time.perf_counter()
    mismatches = sum(a != b for a, b in zip(single, batched))
    return {"prompts": n, "tasks": len(tasks), "batch_size": batch_size,
            "budget_tokens": [b for _, b in jobs],
            "one_at_a_time_s": round(t1 - t0, 3), "batched_s": round(t2 - t1, 3),
            "one_at_a_time_per_s": round(n / (t1 - t0), 2), "batched_per_s": round(n / (t2 - t1), 2),
            "budget_cap": cap, "speedup": round((t1 - t0) / (t2 - t1), 2), "mismatched_outputs": mismatches}


def across_tasks(lm, tasks, filler, batch_size: int) -> dict:
    """BERT masking + SHAP through the run loop, generations batched per task (today's way
    before) against across the tasks of a chunk (``prefetch``); fresh in-memory caches, the
    same outputs (checked)."""
    import tempfile

    from attention_alignment import runner
    from common.backends import HFBackend

    methods = [BertMasking(filler=filler), ShapKernel()]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, prefetch in (("per_task", False), ("across_tasks", True)):
            backend = HFBackend(lm, batch_size=batch_size, name="bench")
            t0 = time.perf_counter()
            runner.run(methods, backend, tasks, Path(tmp) / label, progress=False, prefetch=prefetch)
            out[label + "_s"] = round(time.perf_counter() - t0, 3)
            out[label + "_generated"] = backend.generated
        same = all((Path(tmp) / "per_task" / f"{m.name}_bench.jsonl").read_text().splitlines()[1:]
                   == (Path(tmp) / "across_tasks" / f"{m.name}_bench.jsonl").read_text().splitlines()[1:]
                   for m in methods)
    out.update({"tasks": len(tasks), "batch_size": batch_size, "same_results": same,
                "ratio": round(out["per_task_s"] / out["across_tasks_s"], 2)})
    return out


class Standin:
    """Model-free generator for counting: code depends on the prompt's words."""

    name = "standin"

    def __init__(self):
        self.distinct: set[str] = set()

    def generate(self, prompts, reference):
        self.distinct.update(prompts)
        return [" ".join(hashlib.md5(w.encode()).hexdigest()[:3] for w in p.split()[:12]) for p in prompts]


def counts(tasks, filler) -> dict:
    rows = {"bert_perturbation": [], "shap_perturbation": [], "shap_text_perturbation": []}
    paper = {"bert_perturbation": [], "shap_perturbation": []}
    for t in tasks:
        n_bert = len(nltk_words(t.prompt, t.region, True))
        n_shap = len(nltk_words(t.prompt, t.region, False))
        paper["bert_perturbation"].append(n_bert + 1)  # one per word, plus the original
        paper["shap_perturbation"].append(n_shap + 1)
        for name, method in (("bert_perturbation", BertMasking(filler=filler, definitions="paper")),
                             ("shap_perturbation", ShapKernel(definitions="paper")),
                             ("shap_text_perturbation", ShapPartition(definitions="paper"))):
            g = Standin()
            method.attribute(t, g)
            rows[name].append(len(g.distinct))
    out = {}
    for name, xs in rows.items():
        out[name] = {"mean": round(statistics.mean(xs), 2), "max": max(xs), "total": sum(xs)}
        if name in paper:
            out[name]["paper_mean"] = round(statistics.mean(paper[name]), 2)
            out[name]["paper_rule"] = "words + 1" if name == "bert_perturbation" else \
                "tokens + 1 (distinct prompts)"
    out["tasks"] = len(tasks)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,smollm2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tasks", type=int, default=2, help="MBPP tasks for the throughput runs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int,
                   help="cap the study's budget (reference tokens + 20) to keep CPU runs short")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (1 avoids the collapse of a 2-thread pool on a busy machine)")
    p.add_argument("--count-tasks", type=int, default=20, help="tasks per benchmark for the counts")
    p.add_argument("--out")
    a = p.parse_args(argv)
    import torch
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = dataset.load("corrected")
    filler = BertFiller("tiny-random-bert", device=a.device)
    import os
    report = {"device": a.device, "cpu_cores": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
              "cpu": platform.processor() or platform.machine(),
              "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else None,
              "throughput": {}, "generations_per_task": {}}
    for name in a.models.split(","):
        t0 = time.perf_counter()
        lm = load(name, a.device)
        print(f"{name}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        r = throughput(lm, data.select("mbpp", a.tasks), filler, a.batch_size, a.device, a.max_new_tokens)
        report["throughput"][name] = r
        print(f"{name}: {r['prompts']} prompts, one at a time {r['one_at_a_time_per_s']}/s, "
              f"batched({a.batch_size}) {r['batched_per_s']}/s, speedup {r['speedup']}x, "
              f"mismatches {r['mismatched_outputs']}", flush=True)
        x = across_tasks(lm, data.select("mbpp", a.tasks), filler, a.batch_size)
        report.setdefault("across_tasks", {})[name] = x
        print(f"{name}: BERT masking + SHAP on {x['tasks']} MBPP tasks, batch {a.batch_size}: per task "
              f"{x['per_task_s']} s, across tasks {x['across_tasks_s']} s, ratio {x['ratio']}x, "
              f"same results {x['same_results']}", flush=True)
        del lm
    for bench in ("humaneval", "mbpp") if a.count_tasks > 0 else ():
        c = counts(data.select(bench, a.count_tasks), filler)
        report["generations_per_task"][bench] = c
        for m in ("bert_perturbation", "shap_perturbation", "shap_text_perturbation"):
            paper = f" (paper {c[m]['paper_mean']})" if "paper_mean" in c[m] else ""
            print(f"{bench} {m}: mean {c[m]['mean']} generations/task, max {c[m]['max']}{paper}")
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"perturbation_{a.device.split(':')[0]}.json"
    write_text(out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
