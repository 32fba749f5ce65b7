"""Benchmarks of the self-attention and gradient methods (figures printed, not a test).

    python bench/bench_attention.py                      # tiny random model + SmolLM2-135M, CPU
    python bench/bench_attention.py --models codegen350m-random --tasks 1
    python bench/bench_attention.py --device cuda --dtype float16

Three figures per model:

1. throughput: tasks/s of the whole pipeline (one greedy generation + all ten methods) on the
   first N tasks, with the time split into generation, attention pass and gradient passes;
2. gradient path vs the per-step (ecco) reference on one ~100-token generation: time of each,
   the ratio, and the largest difference of the vectors at the first and last step. The
   reference freezes the weights (input gradients only, as the libraries do); when captum is
   installed (optional, not in requirements.txt) its per-step ``LLMGradientAttribution`` over
   the same tokens is timed too, the figure a user would otherwise get;
3. peak memory of one forward pass over a 1,000-token sequence: plain, with our two-row
   attention capture, and with ``output_attentions=True`` (each in a fresh subprocess; CPU:
   peak resident memory over the loaded model; CUDA: ``max_memory_allocated``).

Models: ``tiny`` (2-layer random Llama, tests' tokenizer), ``smollm2`` (real, offline),
``codegen350m-random`` (CodeGen-350M-mono's architecture and size with random weights and the
SmolLM2 tokenizer: realistic timings without a download), or any ``load_model`` name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from attention_alignment import catalogue  # noqa: E402
from common import dataset, models  # noqa: E402
from common.backends import Example, GivenExample  # noqa: E402
from common.capture import attention_rows, full_attentions  # noqa: E402
from common.method import TaskFailure  # noqa: E402
from gradient_based.gradients import target_gradients  # noqa: E402
from gradient_based.inputxgradient import InputXGradient  # noqa: E402
from gradient_based.reference import per_step_gradients  # noqa: E402
from gradient_based.saliency import Saliency  # noqa: E402


def load(name: str, device: str, dtype: str | None) -> models.LoadedModel:
    if name == "tiny":
        from common.tiny import tiny_model
        lm = tiny_model("llama")
        lm.model.to(device)
        lm.device = device
        return lm
    if name == "codegen350m-random":
        from transformers import AutoModelForCausalLM, CodeGenConfig
        tok = models.load_model("smollm2").tokenizer
        cfg = CodeGenConfig(vocab_size=len(tok), n_positions=2048, n_ctx=2048, n_embd=1024, n_layer=20,
                            n_head=16, rotary_dim=32, bos_token_id=tok.eos_token_id,
                            eos_token_id=tok.eos_token_id)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                 dtype=models._torch_dtype(dtype)).to(device).eval()
        return models.LoadedModel("codegen350m-random", model, tok, device, models._torch_dtype(dtype),
                                  "random CodeGen-350M config")
    return models.load_model(name, device=device, dtype=dtype, attn_implementation="eager")


saliency, input_x_gradient = Saliency.reduce, InputXGradient.reduce


def two_step_gradients(model, prompt_ids, new_ids):
    """Gradients of the first and the last generated token, from one forward pass."""
    p, n = len(prompt_ids), len(new_ids)
    g = target_gradients(model, torch.cat([prompt_ids, new_ids]), [p - 1, p + n - 2])
    return g[p - 1], g[p + n - 2]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(lm, tasks, device, batch_size: int = 1) -> dict:
    """All ten methods on ``tasks``: generation (batched as the runner does), then the methods."""
    methods = catalogue.select()
    failures = 0
    start = time.perf_counter()
    budgets = [min(models.generation_budget(lm, t.reference),
                   (lm.context_length or 10**9) - len(models.encode(lm, t.model_prompt))) for t in tasks]
    gens = models.generate(lm, [t.model_prompt for t in tasks], budgets, batch_size)
    sync(device)
    t_gen = time.perf_counter() - start
    t_att = t_grad = 0.0
    for task, gen in zip(tasks, gens):
        t1 = time.perf_counter()
        ex = Example(lm, task, gen)
        for m in methods:
            if m.family != "self_attention":
                continue
            try:
                m.attribute(task, GivenExample(ex))
            except TaskFailure:
                failures += 1
        sync(device)
        t2 = time.perf_counter()
        for m in methods:
            if m.family == "gradient":
                try:
                    m.attribute(task, GivenExample(ex))
                except TaskFailure:
                    failures += 1
        sync(device)
        t3 = time.perf_counter()
        t_att, t_grad = t_att + t2 - t1, t_grad + t3 - t2
    total = time.perf_counter() - start
    return {"tasks": len(tasks), "seconds": total, "tasks_per_s": len(tasks) / total,
            "generation_s": t_gen, "attention_s": t_att, "gradient_s": t_grad,
            "generated_tokens": sum(len(g.new_ids) for g in gens), "coding_failures": failures}


def gradient_ratio(lm, tokens: int, device) -> dict:
    task = dataset.load().select("humaneval", 1)[0]
    gen = models.generate(lm, [task.model_prompt], tokens)[0]
    n = len(gen.new_ids)
    t0 = time.perf_counter()
    fast = two_step_gradients(lm.model, gen.prompt_ids, gen.new_ids)
    sync(device)
    t1 = time.perf_counter()
    ref = per_step_gradients(lm.model, gen.prompt_ids, gen.new_ids)  # every step, as ecco does
    sync(device)
    t2 = time.perf_counter()
    diff = max(float((r(f) - r(ref[s])).abs().max()) for f, s in ((fast[0], 0), (fast[1], n - 1))
               for r in (saliency, input_x_gradient))
    out = {"prompt_tokens": len(gen.prompt_ids), "generated_tokens": n, "two_pass_s": t1 - t0,
           "per_step_s": t2 - t1, "ratio": (t2 - t1) / (t1 - t0), "max_abs_diff": diff}
    captum_s = time_captum(lm, gen, device)
    if captum_s is not None:
        out["captum_s"] = captum_s
        out["captum_ratio"] = captum_s / (t1 - t0)
    return out


def time_captum(lm, gen, device) -> float | None:
    """Seconds of captum's per-step gradient attribution of every generated token (None: no captum).

    Its target is the log-probability (ours: the probability; the gradients differ by the factor
    1/p per step, the work is the same): one forward and one input-gradient backward per step."""
    try:
        from captum.attr import LayerGradientXActivation, LLMGradientAttribution, TextTokenInput
    except ImportError:
        return None
    method = LLMGradientAttribution(
        LayerGradientXActivation(lm.model, lm.model.get_input_embeddings(), multiply_by_inputs=False),
        lm.tokenizer)
    inp = TextTokenInput(gen.prompt, lm.tokenizer)
    # Same input tokens as ours (captum's own encode may add special tokens).
    inp.inp_tensor = inp.itp_tensor = gen.prompt_ids[None].clone()
    inp.values = lm.tokenizer.convert_ids_to_tokens(gen.prompt_ids.tolist())
    inp.n_itp_features = len(inp.values)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # its display-token decoding warns on byte-level BPE
        warnings.simplefilter("ignore", UserWarning)
        method.attribute(inp, target=gen.new_ids.to(device))
    sync(device)
    return time.perf_counter() - t0


_MEMORY_CHILD = """
import json, os, resource, sys, torch
torch.set_num_threads({threads})
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from bench_attention import load
from common.capture import attention_rows, full_attentions
lm = load({name!r}, {device!r}, {dtype!r})
torch.manual_seed(0)
ids = torch.randint(0, min(len(lm.tokenizer), lm.model.config.vocab_size), ({n},))
cuda = {device!r}.startswith("cuda")
with torch.no_grad():
    lm.model(input_ids=ids[None, :8].to({device!r}))  # warm up allocator and kernels
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if cuda:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    try:  # reset the peak (VmHWM) so that loading the model does not count
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
    base = rss("VmRSS")
mode = {mode!r}
if mode == "plain":
    with torch.no_grad():
        lm.model(input_ids=ids[None].to({device!r}), use_cache=False)
elif mode == "capture":
    attention_rows(lm.model, ids, [{n} - 200, {n} - 1])
else:
    full_attentions(lm.model, ids)
if cuda:
    peak = torch.cuda.max_memory_allocated()
else:
    peak = rss("VmHWM")
print(json.dumps({{"peak_over_model_mb": (peak - base) / 2**20}}))
"""


def memory(name: str, device: str, dtype: str | None, n: int) -> dict:
    out = {}
    for mode in ("plain", "capture", "output_attentions"):
        code = _MEMORY_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), name=name, device=device,
                                    dtype=dtype, n=n, mode=mode, threads=torch.get_num_threads())
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            out[mode] = f"failed: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}"
            continue
        out[mode] = round(json.loads(res.stdout.strip().splitlines()[-1])["peak_over_model_mb"], 1)
    return out


def check_capture(lm, n: int = 64) -> float:
    ids = torch.randint(0, min(len(lm.tokenizer), lm.model.config.vocab_size), (n,))
    rows = [n // 2, n - 1]
    full = full_attentions(lm.model, ids)[:, :, rows]
    return float((attention_rows(lm.model, ids, rows) - full).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2")
    ap.add_argument("--tasks", type=int, default=3, help="tasks for the throughput figure")
    ap.add_argument("--benchmark", default="mbpp", choices=("humaneval", "mbpp", "all"))
    ap.add_argument("--gen-tokens", type=int, default=100)
    ap.add_argument("--seq-len", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=models.DTYPES)
    ap.add_argument("--batch-size", default="1", help="generation batch sizes for the throughput figure, "
                    "comma-separated (e.g. 1,4)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--skip", default="", help="comma list of figures to skip: throughput,ratio,memory")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = dataset.load().select(args.benchmark, args.tasks)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"dtype {args.dtype or 'float32'}, load average {os.getloadavg()[0]:.1f}")
    for name in args.models.split(","):
        lm = load(name, args.device, args.dtype)
        cfg = lm.model.config
        n_params = sum(p.numel() for p in lm.model.parameters()) / 1e6
        print(f"\n## {name}: {cfg.model_type}, {n_params:.0f}M parameters, "
              f"capture == output_attentions rows (max diff {check_capture(lm):.1e})")
        for bs in (int(b) for b in args.batch_size.split(",") if "throughput" not in skip):
            r = throughput(lm, tasks, args.device, bs)
            print(f"throughput, {r['tasks']} {args.benchmark} tasks ({r['generated_tokens']} generated "
                  f"tokens, generation batch {bs}), all ten methods: "
                  f"{r['tasks_per_s']:.3f} tasks/s ({r['seconds']:.1f} s: "
                  f"generation {r['generation_s']:.1f} s, "
                  f"attention {r['attention_s']:.1f} s, gradients {r['gradient_s']:.1f} s; "
                  f"{r['coding_failures']} coding-method failures: no function body)")
        if "ratio" not in skip:
            r = gradient_ratio(lm, args.gen_tokens, args.device)
            print(f"gradients, {r['prompt_tokens']}-token prompt, {r['generated_tokens']} generated tokens: "
                  f"two backward passes {r['two_pass_s']:.2f} s, per-step reference {r['per_step_s']:.2f} s, "
                  f"ratio {r['ratio']:.1f}x, max |difference| of the normalised vectors "
                  f"{r['max_abs_diff']:.1e}")
            print("captum per-step LLMGradientAttribution: " + (
                f"{r['captum_s']:.2f} s, ratio {r['captum_ratio']:.1f}x" if "captum_s" in r
                else "not installed (pip install captum to time it)"))
        if "memory" not in skip:
            r = memory(name, args.device, args.dtype, args.seq_len)
            n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
            n_heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
            maps = n_layers * n_heads * args.seq_len ** 2 * 4 / 2**20
            print(f"peak memory over the loaded model, {args.seq_len}-token forward pass: "
                  f"plain {r['plain']} MB, "
                  f"two-row capture {r['capture']} MB, output_attentions {r['output_attentions']} MB "
                  f"(all maps in float32: {maps:.0f} MB)")
        del lm


if __name__ == "__main__":
    main()
