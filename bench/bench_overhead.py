"""Overhead of all ten model-internal methods over a bare greedy generation (figures printed).

    DATA_MIRROR=../shared python bench/bench_overhead.py                  # SmolLM2 + tiny, CPU, 1 thread
    python bench/bench_overhead.py --models tiny --tasks 2 --repeats 1   # quick
    python bench/bench_overhead.py --device cuda

Per model and benchmark (first N MBPP and HumanEval tasks):

* bare: ``model.generate`` (greedy, SDPA attention, the project's ``models.generate``) of each task;
* ours: what a run gives for a task generated alone (``HFBackend(lm, batch_size=1).example``, as
  ``aa.attribute`` and ``--batch-size 1``): the same tokens, generated from a grad-carrying
  prefill of the prompt that keeps the reading attention row and the first token's logits
  (phase ``grad prefill``; ``generation`` is the rest), then everything the ten methods need:
  the coding position, one :func:`common.internals.internals` call reusing that prefill (a
  forward over the generated positions only, over its cache, and one batched backward for both
  gradient targets) and the ten methods' score reductions;
* the ratio ours / bare: the median over ``--repeats`` interleaved repeats (bare and ours
  alternate per task, so load changes hit both), and the phase breakdown of ours;
* batched (``--batch-size``, default 8 as the CLI): the tasks prepared in chunks of that size
  as a run of several tasks does (``HFBackend(lm, batch_size=B).prepare`` then each task's
  example): each prompt prefilled alone with its graph kept, the chunk decoded in one
  left-padded batch from those prefills, then each task's internals reusing its prefill (the
  generated positions only) and the ten methods; against bare batched generation of the same
  chunks (``models.generate``, left-padded batches). Its "own generation" is the prepare,
  grad prefills included.

With ``--memory N``: peak resident memory over the loaded model of one task's internals on an
N-token random sequence (rows and targets 400 tokens before the end and at the end), each in a
fresh subprocess: this path (SDPA), today's gradient pass on SDPA (full logits), and today's
attention capture + gradient pass on an eager model.

Then, not timed, the scores of this path against the previous ones: the prefill path's
internals, for tasks generated alone and in batches, against the full pass (``internals``
without a prefill: max |difference| of the gradients relative to each target's largest
component and of the attention rows, and whether the tokens equal ``models.generate``'s), and
the full pass against the path before ``common.internals`` (``two_step_gradients`` below: full
logits, one backward per target, on the same SDPA model; ``capture.attention_rows`` on an eager
copy): max |difference| of the saliency and input x gradient vectors and of the attention rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from attention_alignment import catalogue  # noqa: E402
from common import dataset, models, threads  # noqa: E402
from common.backends import Example, HFBackend  # noqa: E402
from common.capture import attention_rows  # noqa: E402
from common.internals import internals  # noqa: E402
from common.method import TaskFailure  # noqa: E402
from gradient_based.gradients import StepGradient  # noqa: E402
from gradient_based.inputxgradient import InputXGradient  # noqa: E402
from gradient_based.saliency import Saliency  # noqa: E402

saliency, input_x_gradient = Saliency.reduce, InputXGradient.reduce
METHODS = catalogue.select()  # the ten model-internal methods


def two_step_gradients(model, prompt_ids, new_ids):
    """The path before common.internals (for comparison only): one forward over the sequence
    with full-vocabulary logits at every position, one backward per target (first and last
    generated token)."""
    p = len(prompt_ids)
    seq = torch.cat([prompt_ids, new_ids[:-1]])
    device = next(model.parameters()).device
    with torch.enable_grad():
        embeds = model.get_input_embeddings()(seq[None].to(device)).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeds, use_cache=False).logits[0]
        first = torch.softmax(logits[p - 1].float(), -1)[int(new_ids[0])]
        last = torch.softmax(logits[-1].float(), -1)[int(new_ids[-1])]
        (g_first,) = torch.autograd.grad(first, embeds, retain_graph=True)
        (g_last,) = torch.autograd.grad(last, embeds)
    emb = embeds.detach()[0].float().cpu()
    return (StepGradient(g_first[0, :p].float().cpu(), emb[:p]),
            StepGradient(g_last[0].float().cpu(), emb))


def load(name: str, device: str, dtype: str | None, attn: str = "sdpa") -> models.LoadedModel:
    """``tiny`` (2-layer random Llama, the tests' tokenizer) or any ``load_model`` name."""
    if name == "tiny":
        from common.tiny import build_model
        lm = build_model("llama", attn_implementation=attn)
        lm.model.to(device)
        lm.device = device
        return lm
    return models.load_model(name, device=device, dtype=dtype, attn_implementation=attn)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def budget(lm, task) -> int:
    return min(models.generation_budget(lm, task.reference),
               (lm.context_length or 10**9) - len(models.encode(lm, task.model_prompt)))


def ours(lm, task, device) -> tuple[object, dict]:
    """Generation + the ten methods exactly as a run does them for a task generated alone (the
    generation's prefill reused, one internals pass shared by all); returns the generation and
    phase seconds."""
    t0 = time.perf_counter()
    backend = HFBackend(lm, batch_size=1)  # its own in-memory generation cache: always generates
    ex = backend.example(task)
    gen = ex.continuation
    sync(device)
    t1 = time.perf_counter()
    # The prompt's grad-carrying forward is this generation's prefill (bare has a no-grad one).
    pre = ex.prefill.seconds if ex.prefill is not None else 0.0
    phases = {"generation": t1 - t0 - pre, "grad prefill": pre}
    if len(gen.new_ids) == 0:
        return gen, phases
    inner = ex.internals()
    t2 = time.perf_counter()
    for m in METHODS:
        try:
            m.attribute(task, backend)
        except TaskFailure:
            pass  # no generated function: the coding methods are recorded as failures
    t3 = time.perf_counter()
    phases.update({"forward + rows": inner.timings["forward"],
                   "batched backward": inner.timings["backward"],
                   "positions + internals other": (t2 - t1) - inner.timings["forward"]
                   - inner.timings["backward"],
                   "scores": t3 - t2})
    return gen, phases


def bare(lm, task, device) -> float:
    t0 = time.perf_counter()
    models.generate(lm, [task.model_prompt], budget(lm, task))
    sync(device)
    return time.perf_counter() - t0


def overhead(lm, tasks, device, repeats: int) -> dict:
    bare_totals, our_totals, phase_sums = [], [], {}
    tokens = 0
    for rep in range(repeats):
        b = o = 0.0
        for task in tasks:
            b += bare(lm, task, device)
            gen, phases = ours(lm, task, device)
            o += sum(phases.values())
            if rep == 0:
                tokens += len(gen.prompt_ids) + len(gen.new_ids)
            for k, v in phases.items():
                phase_sums[k] = phase_sums.get(k, 0.0) + v
        bare_totals.append(b)
        our_totals.append(o)
    ratios = [o / b for o, b in zip(our_totals, bare_totals)]
    total = sum(phase_sums.values())
    # The same ratio within ours alone (all of it over its own generation, grad prefill included):
    # free of the load changes between the bare and our generations on a shared machine.
    within = total / (phase_sums["generation"] + phase_sums["grad prefill"])
    return {"within": within, "bare_s": statistics.median(bare_totals),
            "ours_s": statistics.median(our_totals), "ratio": statistics.median(ratios), "ratios": ratios,
            "tokens": tokens,
            "phases": {k: v / total for k, v in phase_sums.items()}}


def chunks(tasks, size: int) -> list[list]:
    return [tasks[s:s + size] for s in range(0, len(tasks), size)]


def batched(lm, tasks, device, batch_size: int, repeats: int) -> dict:
    """The run loop for several tasks: chunks of ``batch_size`` prepared together (prefills
    reused, decoding batched), then each task's internals and the ten methods, against bare
    batched generation of the same chunks. Medians of interleaved repeats."""
    budgets = {t.task_id: budget(lm, t) for t in tasks}
    bare_s, ours_s, gen_s = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for chunk in chunks(tasks, batch_size):
            models.generate(lm, [t.model_prompt for t in chunk], [budgets[t.task_id] for t in chunk],
                            batch_size=batch_size)
        sync(device)
        t1 = time.perf_counter()
        backend = HFBackend(lm, batch_size=batch_size)
        prepare_s = 0.0
        for chunk in chunks(tasks, batch_size):
            p0 = time.perf_counter()
            backend.prepare(chunk)
            sync(device)
            prepare_s += time.perf_counter() - p0
            for task in chunk:
                try:
                    backend.example(task).internals()
                except TaskFailure:
                    continue
                for m in METHODS:
                    try:
                        m.attribute(task, backend)
                    except TaskFailure:
                        pass
        sync(device)
        t3 = time.perf_counter()
        bare_s.append(t1 - t0)
        ours_s.append(t3 - t1)
        gen_s.append(prepare_s)
    ratios = [o / b for o, b in zip(ours_s, bare_s)]
    # each repeat and bare time printed too: bare batched generation alone varies by 10-20%
    # between repeats on a shared machine
    return {"bare_s": statistics.median(bare_s), "ours_s": statistics.median(ours_s),
            "ratio": statistics.median(ratios), "ratios": ratios, "bare_each": bare_s,
            "within": statistics.median(o / g for o, g in zip(ours_s, gen_s))}


def compare_with_full_pass(lm, tasks, batch_size: int = 1) -> dict:
    """The prefill path (tasks prepared in chunks of ``batch_size``, as a run does) against
    ``models.generate`` + the full pass: tasks with other tokens, tasks whose internals did not
    reuse a prefill, max |difference| of the gradients (relative to each target's largest
    component) and of the attention rows."""
    diff = {"tasks": 0, "other tokens": 0, "no prefill": 0, "gradients (relative)": 0.0,
            "attention rows": 0.0}
    backend = HFBackend(lm, batch_size=batch_size)
    for chunk in chunks(tasks, batch_size):
        backend.prepare(chunk)
        for task in chunk:
            ex = backend.example(task)
            gen = models.generate(lm, [task.model_prompt], budget(lm, task))[0]
            diff["tasks"] += 1
            diff["other tokens"] += int(not torch.equal(ex.continuation.new_ids, gen.new_ids))
            if len(gen.new_ids) == 0:
                continue
            ours = ex.internals()
            diff["no prefill"] += int("prefill" not in ours.timings)
            full = internals(lm.model, ex.ids, ours.rows, ours.targets)
            for a, b in zip(ours.gradients, full.gradients):
                d = float((a.grad - b.grad).abs().max()) / float(b.grad.abs().max())
                diff["gradients (relative)"] = max(diff["gradients (relative)"], d)
            d = float((ours.attention - full.attention).abs().max())
            diff["attention rows"] = max(diff["attention rows"], d)
    return diff


def compare_with_today(lm, eager, tasks) -> dict:
    """Max |difference| of the full pass's scores vs today's two-step gradients and capture rows."""
    diff = {"saliency": 0.0, "inputxgradient": 0.0, "attention rows": 0.0}
    for task in tasks:
        gen = models.generate(lm, [task.model_prompt], budget(lm, task))[0]
        if len(gen.new_ids) == 0:
            continue
        ex = Example(lm, task, gen)
        p, n = ex.prompt_len, ex.n_new
        rows = sorted({p, p - 1})
        inner = internals(lm.model, ex.ids, rows, sorted({p - 1, p + n - 2}))
        reading, coding = two_step_gradients(lm.model, gen.prompt_ids, gen.new_ids)
        for g, q in ((reading, p - 1), (coding, p + n - 2)):
            for name, reduce in (("saliency", saliency), ("inputxgradient", input_x_gradient)):
                d = float((reduce(g) - reduce(inner.gradient(q))).abs().max())
                diff[name] = max(diff[name], d)
        today = attention_rows(eager.model, ex.ids, rows)
        diff["attention rows"] = max(diff["attention rows"], float((today - inner.attention).abs().max()))
    return diff


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(name: str, mode: str, n: int, device: str, dtype: str | None) -> None:
    """One measurement (run in a fresh process by :func:`memory`); prints JSON."""
    lm = load(name, device, dtype, attn="eager" if mode == "today" else "sdpa")
    torch.manual_seed(0)
    ids = torch.randint(0, min(len(lm.tokenizer), lm.model.config.vocab_size), (n,))
    with torch.no_grad():
        lm.model(input_ids=ids[None, :8].to(device))  # warm up allocator and kernels
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak: loading does not count
        base = _rss("VmRSS")
    p = n - 400
    if mode == "internals":
        internals(lm.model, ids, [p, n - 2], [p - 1, n - 2])
    else:
        if mode == "today":
            attention_rows(lm.model, ids, [p, n - 2])
        two_step_gradients(lm.model, ids[:p], ids[p:])
    peak = torch.cuda.max_memory_allocated() if cuda else _rss("VmHWM")
    print(json.dumps({"mb": (peak - base) / 2**20}))


def memory(name: str, n: int, device: str, dtype: str | None, threads_: int) -> dict:
    out = {}
    for mode in ("internals", "sdpa_two_step", "today"):
        cmd = [sys.executable, __file__, "--memory-child", mode, "--models", name, "--memory", str(n),
               "--device", device, "--threads", str(threads_)] + (["--dtype", dtype] if dtype else [])
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            out[mode] = f"failed: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}"
        else:
            out[mode] = f"{json.loads(res.stdout.strip().splitlines()[-1])['mb']:.0f} MB"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,tiny")
    ap.add_argument("--tasks", type=int, default=5, help="tasks per benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=models.DTYPES)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: ratios measured "
                    "on one thread; 0: the machine default of common.threads)")
    ap.add_argument("--batch-size", type=int, default=8, help="also time the tasks generated together "
                    "in batches of this size, as a run does (default 8, the CLI's; 1: skip)")
    ap.add_argument("--no-compare", action="store_true", help="skip the score comparison with today's path")
    ap.add_argument("--memory", type=int, default=0, metavar="N",
                    help="also measure peak memory on an N-token sequence (e.g. 1000)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    header = threads.apply(args.threads or None)
    if args.memory_child:
        memory_child(args.models, args.memory_child, args.memory, args.device, args.dtype)
        return
    print(f"# torch {torch.__version__}, {header}, device {args.device}, dtype {args.dtype or 'float32'}")
    ds = dataset.load()
    benches = {b: ds.select(b, args.tasks) for b in ("mbpp", "humaneval")}
    for name in args.models.split(","):
        lm = load(name, args.device, args.dtype)
        n_params = sum(p.numel() for p in lm.model.parameters()) / 1e6
        print(f"\n## {name}: {lm.model.config.model_type}, {n_params:.0f}M parameters, attention "
              f"{lm.model.config._attn_implementation}")
        for bench, tasks in benches.items():
            for task in tasks[:1]:  # warm-up (allocator, kernels), not timed
                ours(lm, task, args.device)
            r = overhead(lm, tasks, args.device, args.repeats)
            phases = ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["phases"].items())
            print(f"{bench:<9} {len(tasks)} tasks ({r['tokens']} tokens): "
                  f"bare generation {r['bare_s']:.2f} s, "
                  f"generation + ten methods {r['ours_s']:.2f} s, ratio {r['ratio']:.3f}x "
                  f"(repeats {', '.join(f'{x:.3f}' for x in r['ratios'])}; ours over its own generation "
                  f"{r['within']:.3f}x); time of ours: {phases}")
            if args.batch_size > 1:
                b = batched(lm, tasks, args.device, args.batch_size, args.repeats)
                print(f"{bench:<9} batched ({args.batch_size} per chunk, the run loop's default for "
                      f"several tasks; prefills reused, decoding batched): bare {b['bare_s']:.2f} s, "
                      f"generation + ten "
                      f"methods {b['ours_s']:.2f} s, ratio {b['ratio']:.3f}x (repeats "
                      f"{', '.join(f'{x:.3f}' for x in b['ratios'])}; bare per repeat "
                      f"{', '.join(f'{x:.2f}' for x in b['bare_each'])} s; ours over its own "
                      f"generation {b['within']:.3f}x)")
        if not args.no_compare:
            all_tasks = [t for ts in benches.values() for t in ts]
            for size in sorted({1, args.batch_size}):
                d = compare_with_full_pass(lm, all_tasks, size)
                print(f"prefill path (chunks of {size}) vs models.generate + the full internals pass: "
                      + ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in d.items()))
            eager = load(name, args.device, args.dtype, attn="eager")
            d = compare_with_today(lm, eager, all_tasks)
            print("full pass, max |difference| vs the path before it (two_step_gradients, "
                  "capture.attention_rows on eager): " + ", ".join(f"{k} {v:.1e}" for k, v in d.items()))
            del eager
        if args.memory:
            m = memory(name, args.memory, args.device, args.dtype, args.threads)
            print(f"peak memory over the loaded model, {args.memory}-token sequence: this path (SDPA) "
                  f"{m['internals']}, today's gradient pass on SDPA {m['sdpa_two_step']}, today's capture "
                  f"+ gradient pass (eager) {m['today']}")
        del lm


if __name__ == "__main__":
    main()
