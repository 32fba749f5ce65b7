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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import dataset, paths, results
from .metrics import KS, LabelIndex, Ranked, Scorer

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


def _paper_spaceless(source: str, method: str, model: str) -> bool:
    return source == "published" and model == "incoder" and method in results.GRADIENT_METHODS


def load_entries(result_dir: str | os.PathLike = paths.RESULT_DIR, published_dir=None,
                 modes: Iterable[str] = MODES) -> dict[str, list[Entry]]:
    """mode -> entries. Each file is read (and its units located) once per distinct alignment."""
    found = results.discover(result_dir, published_dir)
    published_models = {m for s, _, m, _ in found if s == "published"}
    cache: dict[tuple[Path, bool], Ranked] = {}
    out: dict[str, list[Entry]] = {}
    for mode in modes:
        entries = []
        for source, method, model, path in found:
            spaceless = mode == "paper" and _paper_spaceless(source, method, model)
            if (path, spaceless) not in cache:
                if source == "published":
                    res = results.AttributionResult.from_published(path, spaceless, method, model)
                else:
                    res = results.AttributionResult.load(path)
                cache[path, spaceless] = Ranked(res.prompts)
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


@dataclass
class Tables:
    table2: pd.DataFrame          # mode, model, method, k, precision, recall, f1, alpha
    table3: pd.DataFrame          # mode, method, k, f1, alpha (mean over the five open models)
    by_benchmark: pd.DataFrame    # mode, benchmark, model, method, k, precision, recall, f1, alpha
    label_coverage: pd.DataFrame  # mode, model, method, k, label, coverage


def compute(entries: dict[str, list[Entry]], ks: Iterable[int] = KS, mirror=None,
            benchmarks: bool = True) -> Tables:
    ks = tuple(ks)
    rows, bench_rows, cov_rows = [], [], []
    for mode, mode_entries in entries.items():
        ds, index = labels_of(mode, mirror)
        bench_prompts = {b: [p for p, t in ds.prompts().items() if t.benchmark == b]
                         for b in dataset.BENCHMARKS}
        for e in mode_entries:
            scorer = Scorer(e.ranked, index)
            for k in ks:
                s = scorer.score(k)
                rows.append((mode, e.model, e.method, k, s.precision, s.recall, s.f1, s.alpha))
                for label, share in scorer.label_coverage(k).items():
                    cov_rows.append((mode, e.model, e.method, k, label, share))
            if benchmarks:
                for b, prompts in bench_prompts.items():
                    sub = Scorer(e.ranked, index, prompts)
                    if sub.n_prompts == 0:
                        continue
                    for k in ks:
                        s = sub.score(k)
                        bench_rows.append((mode, b, e.model, e.method, k, s.precision,
                                           s.recall, s.f1, s.alpha))
    metrics_cols = ["precision", "recall", "f1", "alpha"]
    table2 = pd.DataFrame(rows, columns=["mode", "model", "method", "k", *metrics_cols])
    by_bench = pd.DataFrame(bench_rows, columns=["mode", "benchmark", "model", "method", "k",
                                                 *metrics_cols])
    coverage = pd.DataFrame(cov_rows, columns=["mode", "model", "method", "k", "label", "coverage"])
    return Tables(table2, table3_of(table2), by_bench, coverage)


def table3_of(table2: pd.DataFrame) -> pd.DataFrame:
    """Mean F1 and alpha over the five open models, per mode, method and k (paper's Table 3)."""
    five = table2[table2.model.isin(results.PAPER_MODELS)]
    t3 = (five.groupby(["mode", "method", "k"], sort=False)[["f1", "alpha"]].mean().reset_index())
    order = {m: i for i, m in enumerate(results.PAPER_METHODS)}
    t3 = t3[t3.method.isin(order)]
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
                        ("label_coverage", tables.label_coverage)]:
        path = output_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.17g")
        written.append(path)
    return written


def reproduce(result_dir=paths.RESULT_DIR, output_dir=paths.ANALYSIS_OUTPUT_DIR,
              mirror=None, figures: bool = True) -> Tables:
    """Fetch what is missing, score every result in both modes, write tables and figures."""
    from . import fetch

    fetch.fetch(mirror=mirror, progress=False)
    tables = compute(load_entries(result_dir), mirror=mirror)
    write(tables, output_dir)
    if figures:
        from . import plotting
        plotting.all_figures(tables, output_dir)
    return tables


def summary_deltas(table3: pd.DataFrame) -> pd.DataFrame:
    """corrected - paper, per method and k, for F1 and alpha."""
    w = table3.pivot_table(index=["method", "k"], columns="mode", values=["f1", "alpha"])
    out = pd.DataFrame({
        "f1_paper": w[("f1", "paper")], "f1_corrected": w[("f1", "corrected")],
        "alpha_paper": w[("alpha", "paper")], "alpha_corrected": w[("alpha", "corrected")],
    })
    out["f1_delta"] = out.f1_corrected - out.f1_paper
    out["alpha_delta"] = out.alpha_corrected - out.alpha_paper
    order = {m: i for i, m in enumerate(results.PAPER_METHODS)}
    return out.reset_index().sort_values(["method", "k"], key=lambda c: c.map(order)
                                         if c.name == "method" else c).reset_index(drop=True)


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
