"""Error analysis: run generations against the benchmark tests and explain failures with attention.

Pipeline (``python -m analysis.error_analysis``; ``make errors``), one module per step:

1. candidates (:mod:`analysis.generations`): GPT-4's published chat answers
   (``perturbation_based/shap/original_results.pkl``, keyed by prompt text; the four MBPP texts
   shared by two task ids are run against each id's tests) and every generation saved in our own
   result files (``experiment_result/*.jsonl``), with the code to run cut from each;
2. execution in the sandbox (:mod:`analysis.execution`; :func:`execute`);
3. rules (:mod:`analysis.patterns`): for every candidate and every attribution method available
   for its model, the human keywords inside the scored region that overlap none of the method's
   top-k units ("missed"), by label; for each incorrect candidate a *suggested* pattern of
   study.md section 6 (a missed conditional -> 1, else property -> 2, else operator -> 3, else
   datatype -> 4; nothing missed -> "not explained by attention"; pattern 5 is never suggested).
   These are suggestions for a human to confirm, and every output says so;
4. reports (:mod:`analysis.report`): in ``other_data/``, ``execution_outcomes.csv`` (every
   candidate), ``incorrect_generations.csv`` (one row per incorrect candidate and method),
   ``explainable_errors.txt`` (counts, shares, examples, and miss rates of incorrect vs. correct
   code as a control), ``error_report.html`` (self-contained), ``error_*.png`` (pass rates,
   patterns, missed keywords).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from common import dataset, fetch, paths, safe_pickle
from common.results import ResultFileError
from common.safe_pickle import UnsafePickle

from . import taxonomy
from .execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, Outcome, Sandbox, job_for
from .generations import (
    GPT4_ANSWERS,
    AnswerFileError,
    Candidate,
    attributions_for,
    gpt4_candidates,
    saved_candidates,
)
from .patterns import DEFAULT_K, Analysed, analyse, pass_rates
from .report import save_figures, write_outputs
from .taxonomy import Verdict


def execute(cands: list[Candidate], sandbox: Sandbox) -> tuple[list[Outcome], list[Verdict]]:
    """One outcome and verdict per candidate, in order (:mod:`analysis.taxonomy`).

    Three passes: every candidate as extracted (renamed to the tests' function where needed); the
    MBPP candidates whose tests pass one trailing argument too many, again with it dropped; the
    failing ``assert f(x) == y`` of MBPP, again reporting the actual value (format or logic). The
    outcome returned is the adapted one. A candidate without code is a ``load`` failure at the
    ``extraction`` stage."""
    jobs, outcomes = {}, {}
    for c in cands:
        if not c.extraction.found:
            outcomes[c.key] = Outcome(c.key, "error", c.extraction.note, "extraction")
            continue
        jobs[c.key] = job_for(c.task, c.extraction.code, key=c.key, alias_of=c.extraction.alias_of)
    for o in sandbox.run_many(list(jobs.values())):
        outcomes[o.key] = o
    strict = {c.key: outcomes[c.key].passed and not c.extraction.alias_of for c in cands}
    adaptation = {c.key: f"renamed {c.extraction.alias_of}" if c.extraction.alias_of else ""
                  for c in cands}
    retry = {c.key: taxonomy.adapted_job(c.task, c.extraction.code, c.key, c.extraction.alias_of)
             for c in cands if c.task.benchmark == "mbpp" and c.key in jobs
             and taxonomy.drops_trailing_argument(outcomes[c.key])}
    for o in sandbox.run_many(list(retry.values())):
        outcomes[o.key] = o
        jobs[o.key] = retry[o.key]
        adaptation[o.key] = "; ".join(x for x in (adaptation[o.key], "dropped the trailing argument") if x)
    by_key = {c.key: c for c in cands}
    comparisons = {}
    for key, job in jobs.items():
        cmp = taxonomy.failing_comparison(by_key[key].task, outcomes[key])
        if cmp is not None:
            comparisons[key] = (cmp, taxonomy.probe_job(job, cmp))
    actual = {}
    for o in sandbox.run_many([p for _, p in comparisons.values()]):
        actual[o.key.rsplit("::probe", 1)[0]] = taxonomy.actual_from(o)
    verdicts = []
    for c in cands:
        o = outcomes[c.key]
        cmp = comparisons.get(c.key, (None,))[0]
        act = actual.get(c.key)
        fmt = cmp is not None and taxonomy.is_format(act, cmp.expected)
        verdicts.append(Verdict(strict[c.key], o.passed, taxonomy.kind_of(o, fmt), adaptation[c.key],
                                act or "", cmp.expected if cmp else ""))
    return [outcomes[c.key] for c in cands], verdicts


def run(models: list[str] | None = None, k: int = DEFAULT_K, out_dir: Path = paths.OTHER_DATA_DIR,
        result_dir: Path = paths.RESULT_DIR, mirror: str | None = None, labels: str = "corrected",
        timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
        workers: int | None = None, limit: int | None = None, write: bool = True,
        log=print) -> tuple[list[Analysed], dict[str, Path]]:
    """The whole pipeline; ``models`` None = GPT-4 plus every model with saved generations."""
    ds = dataset.load(labels, mirror)
    cands: list[Candidate] = []
    if models is None or "gpt4" in models:
        answers = safe_pickle.load(fetch.path_of(GPT4_ANSWERS, mirror))
        if not isinstance(answers, dict):
            raise AnswerFileError(f"{GPT4_ANSWERS}: expected a dict prompt text -> answer")
        cands += gpt4_candidates(ds, answers)
    saved, warnings = saved_candidates(ds, Path(result_dir))
    for w in warnings:
        log(f"warning: {w}")
    cands += [c for c in saved if models is None or c.model in models]
    if limit is not None:
        per_model: Counter = Counter()
        kept = []
        for c in cands:
            per_model[c.model] += 1
            if per_model[c.model] <= limit:
                kept.append(c)
        cands = kept
    if not cands:
        raise SystemExit("no generations to analyse (GPT-4 not selected and no saved generations)")
    log(f"running {len(cands)} generations of {', '.join(sorted({c.model for c in cands}))}")
    with Sandbox(workers=workers or Sandbox.workers, timeout=timeout, memory_mb=memory_mb) as sb:
        missing = [name for name, ok in sb.layers().items() if not ok]
        if missing:
            log(f"warning: sandbox without {', '.join(missing)} on this machine (see the "
                f"execution module's safety notes); in-process guards and limits still apply")
        outcomes, verdicts = execute(cands, sb)
    attributions = {m: attributions_for(m, Path(result_dir), mirror) for m in {c.model for c in cands}}
    analysed = analyse(cands, outcomes, attributions, k, verdicts)
    files = {}
    if write:
        files = write_outputs(analysed, Path(out_dir), k)
        files.update(save_figures(analysed, Path(out_dir)))
    for r in pass_rates(analysed):
        log(f"{r['model']} {r['benchmark']}: {r['passed']}/{r['tasks']} passed ({r['pass_rate']:.1%})")
    for path in files.values():
        log(f"wrote {paths.shown(path)}")
    return analysed, files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.error_analysis",
        description="Run generations against HumanEval/MBPP tests in a sandbox and suggest which "
                    "error pattern (study.md section 6) the model's attention points to.")
    parser.add_argument("--models", nargs="*", help="models to analyse (default: gpt4 and every "
                        "model with saved generations)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="top-k units (default %(default)s)")
    parser.add_argument("--out", type=Path, default=paths.OTHER_DATA_DIR, help="output folder")
    parser.add_argument("--result-dir", type=Path, default=paths.RESULT_DIR,
                        help="folder of our own result files (default %(default)s)")
    parser.add_argument("--mirror", help="data mirror (default: $DATA_MIRROR or download)")
    parser.add_argument("--labels", choices=dataset.LABEL_VERSIONS, default="corrected")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per task")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="address space per task")
    parser.add_argument("--workers", type=int, help="parallel sandboxes (default: CPUs, at most 4)")
    parser.add_argument("--limit", type=int, help="at most this many generations per model (quick runs)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        run(args.models or None, args.k, args.out, args.result_dir, args.mirror, args.labels,
            args.timeout, args.memory_mb, args.workers, args.limit)
    except (AnswerFileError, ResultFileError, UnsafePickle, fetch.DataUnavailable, fetch.ChecksumMismatch,
            dataset.DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
