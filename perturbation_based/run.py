"""Run a perturbation method over benchmark tasks into ``experiment_result/{method}_{model}.jsonl``.

    python -m perturbation_based.run --method bert_perturbation --model smollm2 --limit 5
    python -m perturbation_based.run --method shap_perturbation --model gpt-4o --name gpt4o \\
        --max-cost-usd 5
    python -m perturbation_based.run --method bert_perturbation --model Qwen/Qwen2.5-Coder-7B \\
        --base-url http://127.0.0.1:8000/v1          # a vLLM / llama.cpp / TGI server

Resumable: tasks already in the result file are skipped, and every generation is cached, so a
rerun after a crash or a budget stop only pays for what is missing. A file made with other
settings is refused rather than mixed. Chat runs also write ``{method}_{model}.usage.json``
(requests, tokens, cost per run and in total).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import dataset, paths
from common.atomic import write_text
from common.chat import PAPER_SYSTEM_PROMPT, BudgetExceeded, ChatBackend, ChatError
from common.completions import CompletionsBackend
from common.generation_cache import DEFAULT_PATH, GenerationCache
from common.models import ModelLoadError
from common.results import ResultWriter, model_slug, result_path

from . import methods

#: Model names that mean a chat API when no backend is named.
CHAT_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt")


def is_chat_model(model: str, base_url: str | None) -> bool:
    return base_url is not None or model.lower().startswith(CHAT_PREFIXES)


def build_generator(model: str, *, base_url: str | None = None, backend: str = "auto",
                    name: str | None = None, device: str = "cpu", dtype: str | None = None,
                    batch_size: int = 8, cache_path: str | os.PathLike | None = DEFAULT_PATH,
                    temperature: float | None = 0.0, seed: int | None = 0,
                    max_cost_usd: float | None = None, concurrency: int = 4,
                    prices_per_1k: tuple[float, float] | None = None, max_tokens: int | None = None,
                    system_prompt: str | None = PAPER_SYSTEM_PROMPT, extract_code: bool = True,
                    api_key: str | None = None, tokenizer: str | None = None):
    """A Hugging Face model (``backend="hf"``), a chat model (``"chat"``) or a base model behind
    a ``/v1/completions`` server (``"completions"``: vLLM, TGI, llama.cpp; ``tokenizer`` gives the
    study's token budget exactly, else it is estimated from characters, see
    :mod:`common.completions`); ``"auto"`` picks chat when ``base_url`` is given or the name
    looks like an OpenAI chat model."""
    cache = GenerationCache(cache_path)
    if backend == "completions":
        tok = None
        if tokenizer is not None:
            from transformers import AutoTokenizer
            try:
                tok = AutoTokenizer.from_pretrained(tokenizer)
            except (OSError, ValueError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelLoadError(f"--tokenizer {tokenizer!r} cannot be loaded: {why}") from exc
        gen = CompletionsBackend(model, base_url=base_url, api_key=api_key, cache=cache, tokenizer=tok,
                                 max_tokens=max_tokens, batch_size=batch_size, max_cost_usd=max_cost_usd,
                                 prices_per_1k=prices_per_1k, concurrency=concurrency)
        gen.name = name or model_slug(model)
        gen.model_settings = {"backend": "completions", "model": model, **gen.settings()}
        return gen
    if backend == "auto":
        backend = "chat" if is_chat_model(model, base_url) else "hf"
    if backend == "chat":
        gen = ChatBackend(model, base_url=base_url, api_key=api_key, cache=cache, temperature=temperature,
                          seed=seed, system_prompt=system_prompt, max_tokens=max_tokens,
                          max_cost_usd=max_cost_usd, prices_per_1k=prices_per_1k,
                          concurrency=concurrency, extract_code=extract_code)
        gen.name = name or model_slug(model)
        gen.model_settings = {"backend": "chat", "model": model, **gen.settings(),
                              "extract_code": extract_code}
        return gen
    if backend != "hf":
        raise ValueError(f"backend must be 'auto', 'hf', 'chat' or 'completions', not {backend!r}")
    from common import models

    from .hf import HFGenerator
    lm = models.load_model(model, device=device, dtype=dtype)
    gen = HFGenerator(lm, cache=cache, batch_size=batch_size, name=name)
    gen.model_settings = {"backend": "hf", "model": model, "source": getattr(lm, "source", ""),
                          "decoding": "greedy", "dtype": str(lm.dtype)}
    return gen


@dataclass
class RunSummary:
    method: str
    model: str
    path: Path
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: str | None = None  # why the run ended early, if it did
    failures: dict[str, str] = field(default_factory=dict)
    usage: dict | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        s = (f"{self.method}_{self.model}: {self.scored} scored, {self.failed} failed, "
             f"{self.skipped} already done -> {paths.shown(self.path)}")
        if self.usage:
            s += (f"\n  {self.usage['requests']} requests, {self.usage['cache_hits']} cache hits, "
                  f"{self.usage['prompt_tokens']}+{self.usage['completion_tokens']} tokens, "
                  f"${self.usage['cost_usd']:.4f}")
        if self.stopped:
            s += f"\n  STOPPED: {self.stopped}"
        return s


def _write_usage(path: Path, run_id: str, usage: dict) -> None:
    """Per-run and total chat usage beside the result file, rewritten atomically."""
    data = {"runs": {}}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("runs"), dict):
                data = loaded
        except json.JSONDecodeError:
            pass  # a damaged usage log is rebuilt from this run on; results are unaffected
    data["runs"][run_id] = usage
    total: dict = {}
    for run in data["runs"].values():
        for k, v in run.items():
            if isinstance(v, int | float):
                total[k] = total.get(k, 0) + v
    data["total"] = total
    write_text(path, json.dumps(data, indent=1) + "\n")


def run(method_name: str, generator, tasks, result_dir: str | os.PathLike = paths.RESULT_DIR,
        method_options: dict | None = None, progress: bool = True, method=None) -> RunSummary:
    """Attribute every task not yet in the result file, appending as each finishes."""
    from tqdm import tqdm

    method = method or methods.create(method_name, generator, **(method_options or {}))
    model = generator.name
    path = result_path(result_dir, method_name, model)
    meta = {"method_settings": method.settings(),
            "model_settings": getattr(generator, "model_settings", {"model": model})}
    writer = ResultWriter(path, method_name, model, meta,
                          match_meta=("method_settings", "model_settings"))
    summary = RunSummary(method_name, model, path)
    usage_path = path.with_name(path.name.removesuffix(".jsonl") + ".usage.json")
    # unique even for two runs within one second (a stop and an immediate resume)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    bar = tqdm(tasks, desc=f"{method_name} {model}", disable=not progress)
    for task in bar:
        if task.task_id in writer.done:
            summary.skipped += 1
            continue
        try:
            attr = method.attribute(task)
        except BudgetExceeded as exc:
            summary.stopped = str(exc)
            break
        except ChatError as exc:
            # the backend is down or refusing: stop and let a rerun pick this task up
            summary.stopped = f"{task.task_id}: {exc}"
            break
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per task, the run goes on
            attr = None
            reason = f"{type(exc).__name__}: {exc}"
        if attr is not None and attr.failure is None:
            writer.add(task.task_id, task.prompt, attr.spans, attr.scores, generation=attr.generation)
            summary.scored += 1
        else:
            reason = attr.failure if attr is not None else reason
            writer.fail(task.task_id, task.prompt, reason,
                        generation=attr.generation if attr is not None else None)
            summary.failures[task.task_id] = reason
            summary.failed += 1
        if hasattr(generator, "usage"):
            summary.usage = generator.usage.as_dict()
            _write_usage(usage_path, run_id, summary.usage)
            bar.set_postfix(cost=f"${summary.usage['cost_usd']:.3f}")
    bar.close()
    if hasattr(generator, "usage"):
        summary.usage = generator.usage.as_dict()
        _write_usage(usage_path, run_id, summary.usage)
    summary.seconds = time.monotonic() - started
    return summary


def method_options(method: str, fill_model: str = "bert-base-uncased", fill_device: str = "cpu",
                   nsamples: int = 50, l1_reg="aic", max_evals: int | None = None,
                   mask_token: str = "[MASK]", seed: int = 0, smoothing: str | None = None) -> dict:
    """The options of ``method`` out of one flat parameter set (CLI and notebooks)."""
    if method == methods.BERT:
        return {"fill_model": fill_model, "fill_device": fill_device, "smoothing": smoothing}
    if method == methods.SHAP:
        return {"nsamples": nsamples, "l1_reg": l1_reg, "mask_token": mask_token, "seed": seed,
                "smoothing": smoothing}
    if method == methods.SHAP_TEXT:
        return {"max_evals": max_evals, "mask_token": mask_token, "smoothing": smoothing}
    raise ValueError(f"unknown perturbation method {method!r}; choose from {sorted(methods.METHODS)}")


def select_tasks(benchmark: str = "all", limit: int | None = None, labels: str = "corrected"):
    return dataset.load(labels).select(benchmark, limit)


def _l1(value: str):
    return False if value.lower() in ("false", "none", "0") else value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, choices=sorted(methods.METHODS))
    p.add_argument("--model", required=True, help="HF short name/folder/hub id, or a chat model id")
    p.add_argument("--name", help="model name in the result file (default: from --model)")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--backend", default="auto", choices=["auto", "hf", "chat", "completions"],
                   help="completions: a base model behind a /v1/completions server (vLLM, TGI, llama.cpp)")
    p.add_argument("--tokenizer", help="completions backend: HF tokenizer (hub id or folder) of the served "
                                       "model, for the study's token budget (default: from characters)")
    p.add_argument("--benchmark", default="all", choices=["all", "humaneval", "mbpp"])
    p.add_argument("--limit", type=int)
    p.add_argument("--labels", default="corrected", choices=list(dataset.LABEL_VERSIONS))
    p.add_argument("--result-dir", default=str(paths.RESULT_DIR))
    p.add_argument("--cache", default=str(DEFAULT_PATH), help="generation cache (SQLite)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int,
                   help="torch CPU threads; 1 is faster on a small CPU shared with other jobs")
    p.add_argument("--fill-model", default="bert-base-uncased")
    p.add_argument("--nsamples", type=int, default=50)
    p.add_argument("--l1-reg", type=_l1, default="aic")
    p.add_argument("--max-evals", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoothing", help="NLTK BLEU smoothing method (default: none, as the study)")
    p.add_argument("--temperature", default="0",
                   help="chat temperature; 'default' leaves the server's (the study's noisy GPT-4 BERT run)")
    p.add_argument("--max-cost-usd", type=float,
                   default=float(os.environ["MAX_COST_USD"]) if os.environ.get("MAX_COST_USD") else None)
    p.add_argument("--price-per-1k", type=float, nargs=2, metavar=("INPUT", "OUTPUT"),
                   help="USD per 1K input and output tokens (needed for a budget on a model "
                        "missing from common.chat.PRICES_PER_1K)")
    p.add_argument("--no-extract-code", action="store_true",
                   help="compare whole chat answers, as the published GPT-4 runs did")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    temperature = None if a.temperature == "default" else float(a.temperature)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    try:
        gen = build_generator(a.model, base_url=a.base_url, backend=a.backend, name=a.name, device=a.device,
                              dtype=a.dtype, batch_size=a.batch_size, cache_path=a.cache,
                              temperature=temperature, max_cost_usd=a.max_cost_usd, concurrency=a.concurrency,
                              prices_per_1k=tuple(a.price_per_1k) if a.price_per_1k else None,
                              extract_code=not a.no_extract_code, tokenizer=a.tokenizer)
        opts = method_options(a.method, fill_model=a.fill_model, fill_device=a.device, nsamples=a.nsamples,
                              l1_reg=a.l1_reg, max_evals=a.max_evals, seed=a.seed, smoothing=a.smoothing)
        summary = run(a.method, gen, select_tasks(a.benchmark, a.limit, a.labels), a.result_dir,
                      opts, progress=not a.no_progress)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 2 if summary.stopped else 0


def top_words(path: str | os.PathLike, k: int = 10, limit: int = 3) -> list[str]:
    """A few lines per task of a result file: the ``k`` highest-scoring words (for notebooks)."""
    from common.results import AttentionResult

    result = AttentionResult.load(path)
    lines = []
    for prompt, ps in list(result.prompts.items())[:limit]:
        words = ", ".join(f"{prompt[a:b]} {ps.scores[i]:.3f}" for i in ps.top_k(k) for a, b in [ps.spans[i]])
        lines.append(f"{ps.task_id}: {words}")
    lines += [f"{tid}: FAILED {reason}" for tid, reason in list(result.failures.items())[:limit]]
    return lines


if __name__ == "__main__":
    sys.exit(main())
