"""The paper's tables from result files, in two modes.

``paper``
    Published labels (``gradient_based/dataset.pkl``) and the published alignment quirks
    (InCoder gradient files located with spaces removed): reproduces the paper exactly.
``corrected``
    Corrected labels (see :mod:`common.dataset`) and plain left-to-right location everywhere.

Our own results (``experiment_result/*.jsonl``) carry character spans and are scored the same
way in both modes; only the labels differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import baselines, dataset, paths, results, stats
from .metrics import KS, STAT_FIELDS, LabelIndex, Ranked, Scorer

MODES = ("paper", "corrected")
LABELS_OF_MODE = {"paper": "published", "corrected": "corrected"}

#: study.md section 5: method -> (F1@5, alpha@5, F1@10, alpha@10, F1@20, alpha@20), as printed.
PAPER_TABLE3 = {
    "bert_perturbation": ("45.7%", "0.27", "51.4%", "0.26", "52.1%", "0.12"),
    "shap_perturbation": ("30.6%", "0.11", "41.5%", "0.18", "48.0%", "0.16"),
    "inputxgradient_reading": ("37.9%", "0.21", "47.3%", "0.30", "48.2%", "0.22"),
    "inputxgradient_coding": ("38.3%", "0.22", "47.9%", "0.31", "49.2%", "0.24"),
    "saliency_reading": ("37.5%", "0.20", "46.0%", "0.28", "48.0%", "0.22"),
    "saliency_coding": ("37.5%", "0.21", "46.7%", "0.29", "49.0%", "0.24"),
    "reading_first": ("24.6%", "0.01", "42.7%", "0.20", "50.5%", "0.22"),
    "reading_last": ("28.8%", "0.07", "46.6%", "0.26", "51.0%", "0.23"),
    "reading_all": ("24.4%", "0.00", "39.8%", "0.14", "50.3%", "0.22"),
    "coding_first": ("26.9%", "0.05", "43.4%", "0.21", "50.5%", "0.22"),
    "coding_last": ("30.9%", "0.10", "47.2%", "0.27", "51.4%", "0.24"),
    "coding_all": ("33.2%", "0.12", "46.4%", "0.25", "51.0%", "0.23"),
}


def fmt_f1(x: float) -> str:
    return f"{x:.1%}"


def fmt_alpha(x: float) -> str:
    return f"{x:.2f}"


@dataclass
class Entry:
    """One result as scored in one mode."""

    source: str
    method: str
    model: str
    ranked: Ranked
    #: score the expected value of a uniformly random top-k over the units (random baseline)
    expected_random: bool = False


def _paper_spaceless(source: str, method: str, model: str) -> bool:
    return source == "published" and model == "incoder" and method in results.GRADIENT_METHODS


def load_entries(result_dir: str | os.PathLike = paths.RESULT_DIR, published_dir=None,
                 modes: Iterable[str] = MODES) -> dict[str, list[Entry]]:
    """mode -> entries. Each file is read (and its units located) once per distinct alignment.
    A file with no scored task (an empty run) is skipped with a printed message."""
    found = results.discover(result_dir, published_dir)
    published_models = {m for s, _, m, _ in found if s == "published"}
    cache: dict[tuple[Path, bool], Ranked] = {}
    out: dict[str, list[Entry]] = {}
    modes = tuple(modes)
    first_mode = modes[0] if modes else None
    for mode in modes:
        entries = []
        for source, method, model, path in found:
            spaceless = mode == "paper" and _paper_spaceless(source, method, model)
            if (path, spaceless) not in cache:
                if source == "published":
                    cache[path, spaceless] = Ranked.from_flat(*results.located_units(path, spaceless))
                else:
                    cache[path, spaceless] = Ranked(results.AttributionResult.load(path).prompts)
            if not cache[path, spaceless].prompts:
                if mode == first_mode:  # once per file, not once per mode
                    print(f"skipped {paths.shown(path)}: 0 tasks scored (every task failed, or "
                          f"the run stopped before its first task)")
                continue
            name = model
            if source == "computed" and model in published_models:
                name = f"{model} (ours)"
            entries.append(Entry(source, method, name, cache[path, spaceless]))
        out[mode] = entries
    return out


def labels_of(mode: str, mirror=None) -> tuple[dataset.Dataset, LabelIndex]:
    """The dataset of a mode's label version and its label index."""
    ds = dataset.load(LABELS_OF_MODE[mode], mirror)
    by_prompt = {p: list(t.keywords) for p, t in ds.prompts().items()}
    return ds, LabelIndex(by_prompt)


def baseline_entries(ds: dataset.Dataset) -> list[Entry]:
    """The three baselines of :mod:`common.baselines` as entries of model ``baseline``."""
    # the baselines read the tasks' prompts and regions, never labels: both label versions
    # share them
    key = tuple((t.prompt, t.region) for t in ds.tasks)
    if key not in _BASELINES:
        if len(_BASELINES) >= 2:
            _BASELINES.clear()
        b = baselines
        _BASELINES[key] = [
            Entry("baseline", b.RANDOM, b.MODEL, Ranked(b.random_units(ds)), expected_random=True),
            Entry("baseline", b.FIRST_K, b.MODEL, Ranked(b.first_k(ds))),
            Entry("baseline", b.RARE_WORDS, b.MODEL, Ranked(b.rare_words(ds)))]
    return list(_BASELINES[key])


_BASELINES: dict[tuple, list[Entry]] = {}


METRICS = ("precision", "recall", "f1", "alpha")
#: columns appended to table2.csv after the original eight
TABLE2_EXTRA = tuple(f"{m}_{b}" for m in METRICS for b in ("lo", "hi")) + ("n_tasks", "n_labelled",
                                                                            "partial")
#: a result scoring fewer than this share of the mode's labelled tasks is marked ``partial``
#: (the published models score 1,131 to 1,134 of 1,134; a 5-task run scores 5)
PARTIAL_BELOW = 0.95
#: columns appended to table3.csv after the original five
TABLE3_EXTRA = ("f1_lo", "f1_hi", "alpha_lo", "alpha_hi", "f1_min", "f1_max", "f1_sd",
                "alpha_min", "alpha_max", "alpha_sd", "n_models", "n_tasks")


@dataclass
class Tables:
    table2: pd.DataFrame          # mode, model, method, k, precision, recall, f1, alpha, + TABLE2_EXTRA
    table3: pd.DataFrame          # mode, method, k, f1, alpha (five-model mean), + TABLE3_EXTRA
    by_benchmark: pd.DataFrame    # mode, benchmark, model, method, k, precision, recall, f1, alpha, n_tasks
    label_coverage: pd.DataFrame  # mode, model, method, k, label, coverage, n_tasks
    #: (mode, model, method, k) -> per-prompt statistics ``(prompts, 7)`` on the mode's index
    prompt_stats: dict | None = None
    #: mode -> the index's prompt texts (the rows of every ``prompt_stats`` array)
    prompts: dict | None = None
    #: :func:`findings_tests` (``findings.csv``), when computed
    findings: pd.DataFrame | None = None
    #: further tables written as ``<name>.csv`` (label corrections, accuracy vs alignment)
    extra: dict = field(default_factory=dict)
    #: mode -> benchmark -> (tasks, mean whitespace words, mean human keywords) of the labelled
    #: prompts (for the figures' captions)
    prompt_sizes: dict = field(default_factory=dict)


def compute(entries: dict[str, list[Entry]], ks: Iterable[int] = KS, mirror=None,
            benchmarks: bool = True, with_baselines: bool = True,
            resamples: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED) -> Tables:
    """Score every entry in every mode (point values exactly as :mod:`common.metrics`), with
    95% percentile bootstrap intervals over prompts (``resamples`` resamples of the mode's
    labelled prompts, drawn from ``seed``; the same resamples for every cell, so intervals of
    one mode are paired) and, with ``with_baselines``, the three baselines as model ``baseline``."""
    ks = tuple(ks)
    rows, bench_rows, bench_sums, cov_rows = [], [], [], []
    prompt_stats, prompt_lists, sizes = {}, {}, {}
    for mode, mode_entries in entries.items():
        ds, index = labels_of(mode, mirror)
        prompt_lists[mode] = index.prompts
        sizes[mode] = {b: (len(ts), float(np.mean([len(t.prompt.split()) for t in ts])),
                           float(np.mean([len(t.keywords) for t in ts])))
                       for b in dataset.BENCHMARKS
                       if (ts := [t for t in ds.tasks if t.benchmark == b])}
        # a benchmark's rows sum the per-prompt statistics of its prompts: the same sums a
        # scorer restricted to those prompts pools
        of_prompt = ds.prompts()
        bench_rows_of = {b: np.asarray([of_prompt[p].benchmark == b for p in index.prompts])
                         for b in dataset.BENCHMARKS}
        todo = list(mode_entries) + (baseline_entries(ds) if with_baselines else [])
        for e in todo:
            scorer = Scorer(e.ranked, index)
            for k in ks:
                if e.expected_random:
                    st = baselines.expected_random_stats(scorer, k)
                    m = stats.metrics_of(st.sum(axis=0))
                    point = tuple(float(m[x]) for x in METRICS)
                else:
                    s = scorer.score(k)
                    st = scorer.prompt_stats(k)
                    point = (s.precision, s.recall, s.f1, s.alpha)
                prompt_stats[mode, e.model, e.method, k] = st
                rows.append((mode, e.model, e.method, k, *point))
                if not e.expected_random:
                    for label, share in scorer.label_coverage(k).items():
                        cov_rows.append((mode, e.model, e.method, k, label, share,
                                         scorer.n_prompts))
            if benchmarks and not e.expected_random:
                for b, rows_of_b in bench_rows_of.items():
                    n_scored = int((scorer.scored & rows_of_b).sum())
                    if n_scored == 0:
                        continue
                    for k in ks:
                        bench_rows.append((mode, b, e.model, e.method, k, n_scored))
                        bench_sums.append(prompt_stats[mode, e.model, e.method, k][rows_of_b].sum(axis=0))
    # every benchmark row's metrics in one vectorised call (elementwise: the same numbers)
    m = stats.metrics_of(np.asarray(bench_sums).reshape(-1, len(STAT_FIELDS)))
    bench_rows = [(*row[:5], *(float(m[x][i]) for x in METRICS), row[5])
                  for i, row in enumerate(bench_rows)]
    metrics_cols = list(METRICS)
    table2 = pd.DataFrame(rows, columns=["mode", "model", "method", "k", *metrics_cols])
    boot = _bootstrap_cells(table2, prompt_stats, prompt_lists, resamples, seed)
    table2 = _with_intervals(table2, boot, prompt_stats)
    by_bench = pd.DataFrame(bench_rows, columns=["mode", "benchmark", "model", "method", "k",
                                                 *metrics_cols, "n_tasks"])
    coverage = pd.DataFrame(cov_rows, columns=["mode", "model", "method", "k", "label", "coverage",
                                               "n_tasks"])
    return Tables(table2, table3_of(table2, boot), by_bench, coverage, prompt_stats, prompt_lists,
                  prompt_sizes=sizes)


def _bootstrap_cells(table2: pd.DataFrame, prompt_stats: dict, prompt_lists: dict,
                     resamples: int, seed: int) -> dict:
    """mode -> (cell keys, metric -> ``(B, cells)`` resampled values); empty without
    resamples."""
    boot = {}
    if not resamples:
        return boot
    for mode in dict.fromkeys(table2["mode"]):
        keys = [(mode, m, meth, k) for m, meth, k in
                table2.loc[table2["mode"] == mode, ["model", "method", "k"]].itertuples(index=False)]
        weights = stats.bootstrap_weights(len(prompt_lists[mode]), resamples, seed)
        stacked = np.stack([prompt_stats[key] for key in keys], axis=1)  # (prompts, cells, 7)
        boot[mode] = (keys, stats.bootstrap_metrics(stacked, weights))
    return boot


def _with_intervals(table2: pd.DataFrame, boot: dict, prompt_stats: dict) -> pd.DataFrame:
    out = table2.copy()
    for col in TABLE2_EXTRA:
        out[col] = np.nan
    for mode, (_keys, values) in boot.items():
        at = np.flatnonzero((out["mode"] == mode).to_numpy())
        for metric in METRICS:
            lo, hi = stats.interval(values[metric])
            out.loc[out.index[at], f"{metric}_lo"] = lo
            out.loc[out.index[at], f"{metric}_hi"] = hi
    out["n_tasks"] = [int((prompt_stats[key][:, 4] > 0).sum()) for key in
                      zip(out["mode"], out.model, out.method, out.k)]
    out["n_labelled"] = [len(prompt_stats[key]) for key in
                         zip(out["mode"], out.model, out.method, out.k)]
    out["partial"] = out.n_tasks < PARTIAL_BELOW * out.n_labelled
    return out


def table3_of(table2: pd.DataFrame, boot: dict | None = None) -> pd.DataFrame:
    """Mean F1 and alpha over the five open models, per mode, method and k (paper's Table 3).

    Extra columns (:data:`TABLE3_EXTRA`): a paired bootstrap interval of the mean (the same
    prompt resample for all five models), the spread across the five models, and the
    baselines (model ``baseline``) as rows of their own after the twelve methods, outside
    the five-model mean (``n_models`` = 0).
    """
    five = table2[table2.model.isin(results.PAPER_MODELS)]
    grouped = five.groupby(["mode", "method", "k"], sort=False)
    t3 = grouped[["f1", "alpha"]].mean().reset_index()
    spread = grouped[["f1", "alpha"]].agg(["min", "max", "std"])
    spread.columns = [f"{m}_{'sd' if a == 'std' else a}" for m, a in spread.columns]
    t3 = t3.merge(spread.reset_index(), on=["mode", "method", "k"], how="left")
    t3["n_models"] = grouped.size().to_numpy()
    t3["n_tasks"] = grouped["n_tasks"].max().to_numpy() if "n_tasks" in five else np.nan
    order = {m: i for i, m in enumerate(results.PAPER_METHODS)}
    t3 = t3[t3.method.isin(order)]
    base = table2[table2.model == baselines.MODEL]
    if len(base):
        b = base[["mode", "method", "k", "f1", "alpha"]].copy()
        b["n_models"] = 0
        b["n_tasks"] = base["n_tasks"].to_numpy() if "n_tasks" in base else np.nan
        t3 = pd.concat([t3, b], ignore_index=True)
        order.update({m: len(order) + i for i, m in enumerate(baselines.METHODS)})
    for col in ("f1_lo", "f1_hi", "alpha_lo", "alpha_hi"):
        t3[col] = np.nan
    for mode, (keys, values) in (boot or {}).items():
        pos = {key: i for i, key in enumerate(keys)}
        for i in np.flatnonzero((t3["mode"] == mode).to_numpy()):
            method, k = t3.method.iat[i], t3.k.iat[i]
            models = results.PAPER_MODELS if t3.n_models.iat[i] else (baselines.MODEL,)
            cols = [pos[mode, m, method, k] for m in models if (mode, m, method, k) in pos]
            for metric in ("f1", "alpha"):
                lo, hi = stats.interval(values[metric][:, cols].mean(axis=1))
                t3.iat[i, t3.columns.get_loc(f"{metric}_lo")] = lo
                t3.iat[i, t3.columns.get_loc(f"{metric}_hi")] = hi
    t3 = t3[["mode", "method", "k", "f1", "alpha", *TABLE3_EXTRA]]
    return t3.sort_values(["mode", "method", "k"], key=lambda c: c.map(order) if c.name == "method"
                          else c, kind="stable").reset_index(drop=True)


def compare_with_paper(table3: pd.DataFrame, mode: str = "paper") -> pd.DataFrame:
    """Our Table 3 (at the paper's rounding) beside the published one, cell by cell."""
    rows = []
    t = table3[table3["mode"] == mode].set_index(["method", "k"])
    for method, published in PAPER_TABLE3.items():
        for i, k in enumerate(KS):
            if (method, k) not in t.index:
                continue
            f1, alpha = t.loc[(method, k), "f1"], t.loc[(method, k), "alpha"]
            rows.append((method, k, published[2 * i], fmt_f1(f1), published[2 * i + 1],
                         fmt_alpha(alpha)))
    df = pd.DataFrame(rows, columns=["method", "k", "paper_f1", "ours_f1", "paper_alpha",
                                     "ours_alpha"])
    df["match"] = (df.paper_f1 == df.ours_f1) & (df.paper_alpha == df.ours_alpha)
    return df


def wide_table3(table3: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Table 3 laid out as printed: one row per method, F1@k and alpha@k columns."""
    t = table3[table3["mode"] == mode]
    out = pd.DataFrame(index=[m for m in results.PAPER_METHODS if m in set(t.method)])
    for k in sorted(set(t.k)):
        sub = t[t.k == k].set_index("method")
        out[f"F1@{k}"] = sub.f1.map(fmt_f1)
        out[f"alpha@{k}"] = sub.alpha.map(fmt_alpha)
    return out


def write(tables: Tables, output_dir: str | os.PathLike = paths.ANALYSIS_OUTPUT_DIR) -> list[Path]:
    """Write the CSVs (fractions unrounded) atomically; return their paths."""
    from .atomic import atomic_path

    output_dir = Path(output_dir)
    written = []
    for name, frame in [("table2", tables.table2), ("table3", tables.table3),
                        ("table2_by_benchmark", tables.by_benchmark),
                        ("label_coverage", tables.label_coverage),
                        *([("findings", tables.findings)] if tables.findings is not None else []),
                        *tables.extra.items()]:
        path = output_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            # 12 significant digits: the last bits of a bootstrap mean depend on the BLAS thread
            # count's summation order; a rerun elsewhere must write the same bytes
            frame.to_csv(tmp, index=False, float_format="%.12g")
        written.append(path)
    return written


def published_only(t: Tables, entries: dict[str, list[Entry]]) -> Tables:
    """The tables restricted to the published results and the baselines (what
    ``analysis/output`` holds, whatever else ``experiment_result/`` contains)."""
    keep = {e.model for es in entries.values() for e in es if e.source == "published"}
    keep.add(baselines.MODEL)

    def only(frame: pd.DataFrame) -> pd.DataFrame:
        if "model" not in frame:
            return frame
        return frame[frame.model.isin(keep)].reset_index(drop=True)

    stats_kept = {key: v for key, v in (t.prompt_stats or {}).items() if key[1] in keep}
    return Tables(only(t.table2), t.table3, only(t.by_benchmark), only(t.label_coverage),
                  stats_kept, t.prompts, t.findings, {n: only(f) for n, f in t.extra.items()},
                  t.prompt_sizes)


def reproduce(result_dir=paths.RESULT_DIR, output_dir=paths.ANALYSIS_OUTPUT_DIR,
              mirror=None, figures: bool = True,
              user_output_dir=paths.USER_OUTPUT_DIR, resamples: int = stats.DEFAULT_RESAMPLES,
              permutations: int = 2000) -> Tables:
    """Fetch what is missing, score every result in both modes, write tables and figures.

    ``output_dir`` (the committed ``analysis/output``) gets the published results and the
    baselines only, so a rerun with the same data rewrites the same files. When
    ``result_dir`` also holds runs of our own, the tables and figures with them go to
    ``user_output_dir`` (``build/output``, git-ignored) and those tables are returned;
    otherwise the published ones. ``resamples`` / ``permutations``: bootstrap resamples of the
    intervals and permutations of the paired tests (the committed outputs use the defaults;
    fewer only for smoke runs)."""
    from . import fetch

    fetch.fetch(mirror=mirror, progress=False)
    entries = load_entries(result_dir)
    tables = compute(entries, mirror=mirror, resamples=resamples)
    tables.findings = findings_tests(tables, resamples=max(resamples, 1), permutations=permutations)
    ds, _ = labels_of("corrected", mirror)
    tables.extra["label_corrections"] = corrections_frame(ds)
    if "corrected" in entries:
        tables.extra["label_correction_effects"] = correction_effects(entries["corrected"], mirror)
    outcomes = paths.OTHER_DATA_DIR / "execution_outcomes.csv"
    if outcomes.is_file():
        tables.extra["accuracy_alignment"] = accuracy_alignment(tables, load_outcomes(outcomes),
                                                                resamples=max(resamples, 1), mirror=mirror)
    published = published_only(tables, entries)
    targets = [(published, output_dir)]
    own = sorted({e.model for es in entries.values() for e in es if e.source == "computed"})
    if own:
        targets.append((tables, user_output_dir))
    for t, folder in targets:
        Path(folder).mkdir(parents=True, exist_ok=True)
        write(t, folder)
        if figures:
            from . import plotting
            plotting.all_figures(t, folder)
    if own:
        print(f"{paths.shown(output_dir)}: the published results only; with your runs "
              f"({', '.join(own)}): {paths.shown(user_output_dir)}")
        return tables
    return published


def corrections_frame(ds: dataset.Dataset) -> pd.DataFrame:
    """Every correction of the corrected labels: file, row, task, word, span before/after, why."""
    cols = ["file", "row", "task_id", "word", "before", "after", "kind", "why"]
    return pd.DataFrame([[getattr(c, f) for f in cols] for c in ds.corrections], columns=cols)


def correction_effects(corrected_entries: list[Entry], mirror=None, ks: Iterable[int] = KS,
                       ) -> pd.DataFrame:
    """What each correction kind moves in Table 3 (corrected mode, five-model mean): the full
    corrected value minus the value with that one kind left out, per method and k."""
    five = [e for e in corrected_entries if e.model in results.PAPER_MODELS
            and e.method in results.PAPER_METHODS]

    def table(without: tuple[str, ...]) -> pd.DataFrame:
        ds = dataset.load("corrected", mirror, without)
        index = LabelIndex({p: list(t.keywords) for p, t in ds.prompts().items()})
        rows = []
        for e in five:
            scorer = Scorer(e.ranked, index)
            for k in ks:
                s = scorer.score(k)
                rows.append((e.method, k, s.f1, s.alpha))
        df = pd.DataFrame(rows, columns=["method", "k", "f1", "alpha"])
        return df.groupby(["method", "k"], sort=False).mean()

    full = table(())
    n_rows = pd.Series([c.kind for c in dataset.load("corrected", mirror).corrections]).value_counts()
    out = []
    for kind in dataset.CORRECTION_KINDS:
        delta = full - table((kind,))
        for (method, k), row in delta.iterrows():
            out.append({"kind": kind, "rows": int(n_rows.get(kind, 0)), "method": method, "k": k,
                        "f1_delta": row.f1, "alpha_delta": row.alpha})
    return pd.DataFrame(out)


def load_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """The error analysis's execution outcomes (model, benchmark, task_id, status, ...)."""
    df = pd.read_csv(path)
    missing = {"model", "benchmark", "task_id", "status"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return df


def per_task_scores(t: Tables, mode: str, model: str, method: str, k: int,
                    ds: dataset.Dataset) -> pd.DataFrame:
    """task_id, benchmark, F1@k of one result per task (a prompt text shared by two task ids
    counts for both); tasks without scored units are left out."""
    st = t.prompt_stats[mode, model, method, k]
    f1 = stats.metrics_of(st)["f1"]
    row = {p: i for i, p in enumerate(t.prompts[mode])}
    out = [(task.task_id, task.benchmark, f1[row[task.prompt]]) for task in ds.tasks
           if task.prompt in row and st[row[task.prompt], 4] > 0]
    return pd.DataFrame(out, columns=["task_id", "benchmark", "f1"])


def accuracy_alignment(t: Tables, outcomes: pd.DataFrame, ks: Iterable[int] = KS,
                       resamples: int = stats.DEFAULT_RESAMPLES,
                       seed: int = stats.DEFAULT_SEED, mirror=None) -> pd.DataFrame:
    """Does a generation that passes its tests come with higher alignment? Per mode, model
    (those with execution outcomes), method and k: point-biserial r and AUC of per-task F1@k
    against pass/fail, per benchmark (never pooled), with bootstrap intervals
    (:func:`common.stats.by_stratum`). ``status`` other than ``passed`` counts as a failure."""
    rows = []
    for mode in t.prompts:
        ds, _ = labels_of(mode, mirror)
        keys = sorted({(m, meth) for (md, m, meth, _) in t.prompt_stats if md == mode
                       and m in set(outcomes.model)})
        for model, method in keys:
            out = outcomes[outcomes.model == model].drop_duplicates("task_id").set_index("task_id")
            for k in ks:
                scores = per_task_scores(t, mode, model, method, k, ds)
                scores = scores[scores.task_id.isin(out.index)]
                passed = (out.loc[scores.task_id, "status"] == "passed").to_numpy()
                res = stats.by_stratum(scores.f1.to_numpy(), passed, scores.benchmark.to_numpy(),
                                       resamples, seed)
                for r in res.to_dict("records"):
                    rows.append({"mode": mode, "model": model, "method": method, "k": k,
                                 "benchmark": r.pop("stratum"), **r})
    return pd.DataFrame(rows)


def summary_deltas(table3: pd.DataFrame) -> pd.DataFrame:
    """corrected - paper, per method and k, for F1 and alpha."""
    w = table3.pivot_table(index=["method", "k"], columns="mode", values=["f1", "alpha"])
    out = pd.DataFrame({
        "f1_paper": w[("f1", "paper")], "f1_corrected": w[("f1", "corrected")],
        "alpha_paper": w[("alpha", "paper")], "alpha_corrected": w[("alpha", "corrected")],
    })
    out["f1_delta"] = out.f1_corrected - out.f1_paper
    out["alpha_delta"] = out.alpha_corrected - out.alpha_paper
    order = {m: i for i, m in enumerate(results.PAPER_METHODS + baselines.METHODS)}
    return out.reset_index().sort_values(["method", "k"], key=lambda c: c.map(order)
                                         if c.name == "method" else c).reset_index(drop=True)


CODING_READING_PAIRS = (("coding_first", "reading_first"), ("coding_last", "reading_last"),
                        ("coding_all", "reading_all"), ("saliency_coding", "saliency_reading"),
                        ("inputxgradient_coding", "inputxgradient_reading"))
CLAIMS = ("bert_best", "gradient_over_self_attention", "coding_over_reading")
FINDINGS_COLUMNS = ("mode", "k", "metric", "claim", "comparison", "effect", "effect_lo",
                    "effect_hi", "p", "p_holm", "holds", "models_agree", "n_models", "n_tasks")


def _claim_design(claim: str, values: pd.Series) -> tuple[list[str], list[list[int]], Callable]:
    """Methods, exchangeable blocks and effect (metric values ``(R, methods, models)`` ->
    ``(R, models)``, averaged over models by the caller) of one finding."""
    if claim == "bert_best":
        others = values.drop("bert_perturbation")
        methods = ["bert_perturbation", str(others.idxmax())]  # against the strongest other
        return methods, [[0, 1]], lambda v: v[:, 0] - v[:, 1]
    if claim == "gradient_over_self_attention":
        methods = list(results.GRADIENT_METHODS) + list(results.SELF_ATTENTION_METHODS)
        g = len(results.GRADIENT_METHODS)
        return methods, [list(range(len(methods)))], \
            lambda v: v[:, :g].mean(axis=1) - v[:, g:].mean(axis=1)
    if claim == "coding_over_reading":
        n = len(CODING_READING_PAIRS)
        methods = [c for c, _ in CODING_READING_PAIRS] + [r for _, r in CODING_READING_PAIRS]
        return methods, [[i, i + n] for i in range(n)], \
            lambda v: v[:, :n].mean(axis=1) - v[:, n:].mean(axis=1)
    raise ValueError(f"unknown claim {claim!r}")


def _comparison(claim: str, methods: list[str]) -> str:
    if claim == "bert_best":
        return f"{methods[0]} - {methods[1]}"
    if claim == "gradient_over_self_attention":
        return "mean(4 gradient) - mean(6 self-attention)"
    return "mean(5 coding) - mean(5 reading twins)"


def findings_tests(t: Tables, ks: Iterable[int] = KS, resamples: int = 2000,
                   permutations: int = 2000, seed: int = stats.DEFAULT_SEED) -> pd.DataFrame:
    """Every claim of :func:`findings` as a paired test over prompts, per mode, k and metric.

    ``effect`` is the claim's difference of five-model means (positive = the paper's claim
    holds); ``effect_lo``/``effect_hi`` a 95% paired bootstrap interval (one prompt resample
    for every method and model); ``p`` a two-sided paired permutation test (method labels
    exchanged inside each prompt: BERT masking against the strongest other method; within
    each reading/coding pair; across all ten gradient and self-attention methods), with the
    same permuted labels for all five models; ``p_holm`` Holm-adjusted across the rows of a
    mode (3 claims x k x 2 metrics); ``models_agree``: models whose own effect is positive.
    ``holds``: effect > 0 and p_holm < 0.05.
    """
    if not t.prompt_stats:
        raise ValueError("findings_tests needs tables computed with per-prompt statistics")
    rows = []
    models = list(results.PAPER_MODELS)
    for mode in dict.fromkeys(t.table3["mode"]):
        t3 = t.table3[(t.table3["mode"] == mode) & (t.table3.n_models == len(models))]
        weights = stats.bootstrap_weights(len(t.prompts[mode]), resamples, seed)
        first = len(rows)
        for k in ks:
            tk = t3[t3.k == k].set_index("method")
            for claim in CLAIMS:
                designs: dict[tuple, list[str]] = {}  # methods -> metrics sharing that design
                for metric in ("f1", "alpha"):
                    design = _claim_design(claim, tk[metric])
                    designs.setdefault(tuple(design[0]), []).append(metric)
                for methods, metrics in designs.items():
                    _, blocks, contrast = _claim_design(claim, tk[metrics[0]])
                    st = np.stack([np.stack([t.prompt_stats[mode, m, meth, k] for m in models],
                                            axis=1) for meth in methods])  # (meth, prompts, models, 7)

                    def effect(values, contrast=contrast, metrics=metrics):
                        return np.stack([contrast(values[x]).mean(axis=-1) for x in metrics], axis=-1)

                    observed, p = stats.permutation_test(st, effect, blocks, permutations, seed)
                    boot = stats.bootstrap_metrics(np.moveaxis(st, 1, 0), weights)
                    lo, hi = stats.interval(effect(boot))
                    point = stats.metrics_of(st.sum(axis=1))
                    for j, metric in enumerate(metrics):
                        per_model = contrast(point[metric][None])[0]
                        rows.append({"mode": mode, "k": k, "metric": metric, "claim": claim,
                                     "comparison": _comparison(claim, list(methods)),
                                     "effect": float(observed[j]), "effect_lo": float(lo[j]),
                                     "effect_hi": float(hi[j]), "p": float(p[j]),
                                     "models_agree": int((per_model > 0).sum()),
                                     "n_models": len(models),
                                     "n_tasks": int((st[..., 4].sum(axis=(0, 2)) > 0).sum())})
        adjusted = stats.holm([r["p"] for r in rows[first:]])
        for r, p in zip(rows[first:], adjusted):
            r["p_holm"] = float(p)
            r["holds"] = bool(r["effect"] > 0 and p < 0.05)
    return pd.DataFrame(rows, columns=list(FINDINGS_COLUMNS))


def findings(table3: pd.DataFrame) -> pd.DataFrame:
    """The paper's three comparative findings, checked per mode and k on mean F1 and alpha.

    * ``bert_best``: BERT masking has the highest value of all twelve methods;
    * ``gradient_over_self_attention``: the mean of the four gradient methods beats the mean of
      the six self-attention methods;
    * ``coding_over_reading``: each coding-stage method beats its reading-stage twin (share of
      the five pairs).
    """
    pairs = [("coding_first", "reading_first"), ("coding_last", "reading_last"),
             ("coding_all", "reading_all"), ("saliency_coding", "saliency_reading"),
             ("inputxgradient_coding", "inputxgradient_reading")]
    rows = []
    if "n_models" in table3:  # baselines stand outside the comparisons
        table3 = table3[table3.n_models > 0]
    for (mode, k), t in table3.groupby(["mode", "k"], sort=False):
        t = t.set_index("method")
        for metric in ("f1", "alpha"):
            v = t[metric]
            best = v.idxmax()
            grad = v[[m for m in results.GRADIENT_METHODS if m in v.index]].mean()
            sa = v[[m for m in results.SELF_ATTENTION_METHODS if m in v.index]].mean()
            won = [v[c] > v[r] for c, r in pairs if c in v.index and r in v.index]
            rows.append({"mode": mode, "k": k, "metric": metric, "best_method": best,
                         "bert_best": best == "bert_perturbation",
                         "gradient_mean": grad, "self_attention_mean": sa,
                         "gradient_over_self_attention": bool(grad > sa),
                         "coding_over_reading": f"{sum(won)}/{len(won)}"})
    return pd.DataFrame(rows)
