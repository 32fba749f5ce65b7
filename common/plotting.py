"""Figures of the analysis notebooks (matplotlib + seaborn, PNG at 150 dpi, headless).

Where a table carries intervals (``*_lo``/``*_hi`` columns) the bars get 95% bootstrap error
bars; the baselines (model ``baseline``) are drawn as dashed reference lines, not bars.
Methods carry readable names (:func:`method_label`), models one colour each in every figure
(:func:`model_colours`), and a model scored on fewer tasks than the labelled set is named
``<model> (partial: n tasks)`` (the ``partial`` column of Table 2). Sizes are bounded: more
models make bars and cells narrower, never the figure wider than :data:`MAX_WIDTH`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import baselines, results  # noqa: E402
from .atomic import atomic_path  # noqa: E402
from .dataset import LABELS  # noqa: E402

DPI = 150
#: inches; no figure grows wider than this, whatever the number of models
MAX_WIDTH = 14.0
#: colour-blind safe palette shared by every figure (seaborn's "colorblind")
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
           "#949494", "#ece133", "#56b4e9")
#: published models first, in a fixed order, so a model keeps its colour across figures
MODEL_ORDER = results.PAPER_MODELS + ("gpt4",)

_STAGE = {"reading": "reading", "coding": "coding"}
_LAYERS = {"first": "first layer", "last": "last layer", "all": "all layers"}
_SPECIAL = {"bert_perturbation": "BERT masking", "shap_perturbation": "SHAP",
            "shap_text_perturbation": "SHAP (text masker)",
            baselines.RANDOM: "random baseline", baselines.FIRST_K: "first-k baseline",
            baselines.RARE_WORDS: "rare-words baseline"}

GPT4_NOTE = ("GPT-4 has no self-attention or gradient cells: those methods need the model's weights "
             "and activations, which an API does not expose; the study ran only BERT masking and SHAP "
             "on it.")


def method_label(method: str) -> str:
    """Readable name of a method: ``inputxgradient_coding`` -> ``Input×Gradient (coding)``,
    ``reading_last`` -> ``Attention, reading (last layer)``; unknown names are returned as is."""
    if method in _SPECIAL:
        return _SPECIAL[method]
    parts = method.split("_")
    if parts[0] in ("saliency", "inputxgradient") and len(parts) == 2 and parts[1] in _STAGE:
        kind = "Saliency" if parts[0] == "saliency" else "Input×Gradient"
        return f"{kind} ({parts[1]})"
    if parts[0] in _STAGE and len(parts) >= 2 and parts[1] in _LAYERS:
        extra = ", layer-0 heads" if parts[2:] == ["layer0"] else ""
        return f"Attention, {parts[0]} ({_LAYERS[parts[1]]}{extra})"
    return method


def _method_order(methods) -> list[str]:
    known = [m for m in results.PAPER_METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def _model_order(models) -> list[str]:
    models = list(dict.fromkeys(models))
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]


def model_colours(models) -> dict[str, str]:
    """model -> colour, the published models always first (so always the same colours)."""
    ordered = [m for m in MODEL_ORDER] + [m for m in _model_order(models) if m not in MODEL_ORDER]
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(ordered)}


def model_labels(table2: pd.DataFrame) -> dict[str, str]:
    """model -> name shown in figures, ``(partial: n tasks)`` appended where Table 2 marks the
    model's rows ``partial``."""
    out = {}
    for model, rows in table2.groupby("model", sort=False):
        label = str(model)
        if "partial" in rows and rows.partial.astype(bool).any():
            label += f" (partial: {int(rows.n_tasks.max())} tasks)"
        out[model] = label
    return out


def _caption(fig, text: str) -> None:
    """A note under the axes, wrapped to the figure's width."""
    import textwrap

    width = int(fig.get_figwidth() * 12)
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(text, width)), ha="left", va="top", fontsize=8,
             color="#333333")


def _save(fig, path: Path) -> Path:
    # no timestamps or software versions in the file, so a rerun writes the same bytes
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


BASELINE_STYLE = {baselines.RANDOM: ("grey", "--"), baselines.FIRST_K: ("#8c564b", ":"),
                  baselines.RARE_WORDS: ("black", "-.")}


def _baseline_lines(ax, values: dict[str, float], vertical: bool = False) -> None:
    """Dashed reference line per baseline (method -> value)."""
    for method, v in values.items():
        if not np.isfinite(v):
            continue
        color, style = BASELINE_STYLE.get(method, ("grey", "--"))
        label = method_label(method)
        if vertical:
            ax.axvline(v, color=color, linestyle=style, linewidth=1.2, label=label)
        else:
            ax.axhline(v, color=color, linestyle=style, linewidth=1.2, label=label)


def _notes(table2: pd.DataFrame) -> list[str]:
    """Captions every per-model figure needs: missing GPT-4 cells, partial runs."""
    notes = []
    t = table2[table2.model != baselines.MODEL]
    if "gpt4" in set(t.model) and set(t[t.model == "gpt4"].method) < set(t.method):
        notes.append(GPT4_NOTE)
    if "partial" in t and t.partial.astype(bool).any():
        notes.append("partial = scored on fewer than 95% of the labelled tasks; its values are not "
                     "comparable with the full runs.")
    return notes


def metric_bars(table2: pd.DataFrame, mode: str, path: Path) -> Path:
    """F1 and alpha per method and model, one row of panels per k; 95% bootstrap error bars
    where the table has them, baselines as reference lines."""
    t = table2[table2["mode"] == mode]
    base = t[t.model == baselines.MODEL]
    t = t[t.model != baselines.MODEL]
    ks = sorted(set(t.k))
    methods = _method_order(t.method)
    models = _model_order(t.model)
    colours, names = model_colours(models), model_labels(t)
    fig, axes = plt.subplots(len(ks), 2, figsize=(MAX_WIDTH, 3.6 * len(ks)), squeeze=False)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(methods))
    for row, k in enumerate(ks):
        for col, metric in enumerate(["f1", "alpha"]):
            ax = axes[row][col]
            sub = t[t.k == k].pivot_table(index="method", columns="model", values=metric)
            for i, model in enumerate(models):
                vals = [sub.loc[m, model] if m in sub.index and model in sub.columns else np.nan
                        for m in methods]
                yerr = None
                if f"{metric}_lo" in t:
                    cell = t[(t.k == k) & (t.model == model)].set_index("method")
                    lo = cell[f"{metric}_lo"].reindex(methods).to_numpy()
                    hi = cell[f"{metric}_hi"].reindex(methods).to_numpy()
                    v = np.asarray(vals, dtype=float)
                    yerr = np.nan_to_num(np.stack([v - lo, hi - v]), nan=0.0).clip(0)
                ax.bar(x + i * width, vals, width, label=names[model], yerr=yerr,
                       color=colours[model], error_kw={"elinewidth": 0.6, "capsize": 0})
            b = base[base.k == k].set_index("method")[metric]
            _baseline_lines(ax, b.to_dict())
            ax.set_xticks(x + width * (len(models) - 1) / 2, [method_label(m) for m in methods],
                          rotation=50, ha="right", fontsize=8)
            ax.set_title(f"{'F1' if metric == 'f1' else 'Krippendorff alpha'} @ k={k} ({mode} mode)",
                         fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    notes = _notes(t)
    if notes:
        _caption(fig, " ".join(notes))
    return _save(fig, path)


def table3_intervals(table3: pd.DataFrame, mode: str, path: Path) -> Path:
    """Five-model mean F1 and alpha per method with its 95% paired bootstrap interval (thick)
    and the range across the five models (thin), baselines as vertical reference lines."""
    import seaborn as sns

    t = table3[table3["mode"] == mode]
    five, base = t[t.n_models > 0], t[t.n_models == 0]
    ks = sorted(set(t.k))
    methods = _method_order(five.method)
    family = {m: (0 if m in results.PERTURBATION_METHODS else 1 if m in results.GRADIENT_METHODS
                  else 2) for m in methods}
    colours = [PALETTE[family[m]] for m in methods]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(ks), figsize=(min(MAX_WIDTH, 4.6 * len(ks) + 2), 9),
                                 squeeze=False, sharey=True)
    y = np.arange(len(methods))
    for col, k in enumerate(ks):
        tk = five[five.k == k].set_index("method").reindex(methods)
        for row, metric in enumerate(["f1", "alpha"]):
            ax = axes[row][col]
            v = tk[metric].to_numpy()
            ax.hlines(y, tk[f"{metric}_min"], tk[f"{metric}_max"], color="lightgrey", linewidth=6,
                      label="range over the five models")
            ax.errorbar(v, y, xerr=np.nan_to_num(np.stack([v - tk[f"{metric}_lo"].to_numpy(),
                                                           tk[f"{metric}_hi"].to_numpy() - v])).clip(0),
                        fmt="none", ecolor="black", elinewidth=2, capsize=3, label="95% interval")
            ax.scatter(v, y, c=colours, zorder=3, s=30)
            _baseline_lines(ax, base[base.k == k].set_index("method")[metric].to_dict(), vertical=True)
            ax.set_yticks(y, [method_label(m) for m in methods], fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{'F1' if metric == 'f1' else 'Krippendorff alpha'} @ k={k} ({mode} mode)",
                         fontsize=10)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _caption(fig, "Dots: mean over the five open models (colour: perturbation, gradient, "
                  "self-attention). Thick bars: 95% paired bootstrap interval over prompts; grey: "
                  "range over the five models.")
    return _save(fig, path)


CLAIM_LABELS = {"bert_best": "BERT masking beats the best other method",
                "gradient_over_self_attention": "gradient beats self-attention",
                "coding_over_reading": "coding beats reading"}


def findings_forest(findings: pd.DataFrame, mode: str, path: Path) -> Path:
    """Effect of each finding (five-model means; > 0: the paper's claim) with its 95% paired
    bootstrap interval, per k and metric; Holm-adjusted p in the labels."""
    import seaborn as sns

    f = findings[findings["mode"] == mode].reset_index(drop=True)
    labels = [f"{CLAIM_LABELS.get(r.claim, r.claim)} ({'F1' if r.metric == 'f1' else 'alpha'}, k={r.k})"
              f"  p_holm={r.p_holm:.3g}, {r.models_agree}/{r.n_models} models"
              for r in f.itertuples()]
    claim_color = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(dict.fromkeys(f.claim))}
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(f) + 1.2))
    y = np.arange(len(f))
    err = np.stack([f.effect - f.effect_lo, f.effect_hi - f.effect]).clip(0)
    for i, r in f.iterrows():
        ax.errorbar(r.effect, i, xerr=err[:, [i]], fmt="o", color=claim_color[r.claim], capsize=3)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("effect (difference of five-model means; > 0: the paper's claim)")
    ax.set_title(f"The paper's findings, paired tests over prompts ({mode} mode)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(table2: pd.DataFrame, mode: str, k: int, path: Path, metric: str = "f1") -> Path:
    """Method x model grid of one metric (seaborn); empty cells (a method not run on a model)
    are marked and explained."""
    import seaborn as sns

    t = table2[(table2["mode"] == mode) & (table2.k == k)]
    names = model_labels(t)
    grid = t.pivot_table(index="method", columns="model", values=metric)
    grid = grid.reindex(_method_order(grid.index))[_model_order(grid.columns)]
    n_models = len(grid.columns)
    cell = min(1.1, (MAX_WIDTH - 4.5) / max(n_models, 1))  # narrower cells, never a wider figure
    fig, ax = plt.subplots(figsize=(4.5 + cell * n_models, 0.42 * len(grid) + 1.8))
    sns.heatmap(grid.rename(index=method_label, columns=names), ax=ax, cmap="viridis",
                annot=True, fmt=".2f", annot_kws={"fontsize": 8 if cell >= 0.8 else 6},
                cbar_kws={"label": "F1" if metric == "f1" else metric}, linewidths=0.5,
                linecolor="white")
    for i, j in zip(*np.where(~np.isfinite(grid.to_numpy(dtype=float)))):
        if (grid.columns[j] == baselines.MODEL) != (grid.index[i] in baselines.METHODS):
            continue  # a baseline is no model's method: nothing to explain there
        ax.text(j + 0.5, i + 0.5, "not run", ha="center", va="center", fontsize=7, color="#777777")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_title(f"{'F1' if metric == 'f1' else metric} @ k={k}, method x model ({mode} mode)",
                 fontsize=10)
    fig.tight_layout()
    notes = _notes(t)
    if notes:
        _caption(fig, " ".join(notes))
    return _save(fig, path)


def _grouped_bars(grid: pd.DataFrame, ylabel: str, title: str, path: Path,
                  colours: list[str] | None = None, caption: str = "") -> Path:
    """One group of bars per row of ``grid`` (methods), one bar per column."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    x = np.arange(len(grid))
    width = 0.8 / max(len(grid.columns), 1)
    colours = colours or list(PALETTE)
    for i, column in enumerate(grid.columns):
        ax.bar(x + i * width, grid[column], width, label=column, color=colours[i % len(colours)])
    ax.set_xticks(x + width * (len(grid.columns) - 1) / 2, [method_label(m) for m in grid.index],
                  rotation=50, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if caption:
        _caption(fig, caption)
    return _save(fig, path)


def label_coverage(coverage: pd.DataFrame, mode: str, k: int, path: Path) -> Path:
    """Share of human keywords of each type inside the top-k, mean over models."""
    t = coverage[(coverage["mode"] == mode) & (coverage.k == k)]
    grid = t.pivot_table(index="method", columns="label", values="coverage", aggfunc="mean")
    grid = grid.reindex(_method_order(grid.index))[[c for c in LABELS if c in grid.columns]]
    return _grouped_bars(grid, "share of human keywords in top-k",
                         f"Alignment per label type @ k={k} ({mode} mode, mean over models)", path,
                         PALETTE[4:] + PALETTE[:4])


def benchmark_gap_note(by_benchmark: pd.DataFrame, mode: str, k: int, sizes: dict | None) -> str:
    """One sentence on why MBPP scores higher than HumanEval, from the data."""
    t = by_benchmark[(by_benchmark["mode"] == mode) & (by_benchmark.k == k)]
    mean = t[t.model != baselines.MODEL].groupby("benchmark").f1.mean()
    if not {"humaneval", "mbpp"} <= set(mean.index):
        return ""
    text = (f"Mean F1 over methods: HumanEval {mean['humaneval']:.2f}, MBPP {mean['mbpp']:.2f}.")
    if sizes and {"humaneval", "mbpp"} <= set(sizes):
        (_, hw, hk), (_, mw, mk) = sizes["humaneval"], sizes["mbpp"]
        text += (f" The gap is mostly prompt length: an MBPP prompt has about {mw:.0f} words and "
                 f"{mk:.0f} human keywords, so a top-{k} covers most of it, while a HumanEval prompt "
                 f"has about {hw:.0f} words for {hk:.0f} keywords.")
    if mode == "paper":
        text += " In paper mode the published MBPP spans are one character short, which lowers MBPP."
    return text


def benchmarks(by_benchmark: pd.DataFrame, mode: str, k: int, path: Path,
               sizes: dict | None = None) -> Path:
    """F1 per method on HumanEval against MBPP, mean over models, with a sentence on the gap."""
    t = by_benchmark[(by_benchmark["mode"] == mode) & (by_benchmark.k == k)]
    grid = t.pivot_table(index="method", columns="benchmark", values="f1", aggfunc="mean")
    grid = grid.reindex(_method_order(grid.index)).rename(columns={"humaneval": "HumanEval",
                                                                   "mbpp": "MBPP"})
    return _grouped_bars(grid, "F1", f"HumanEval vs MBPP, F1 @ k={k} ({mode} mode, mean over models)",
                         path, [PALETTE[0], PALETTE[1]],
                         benchmark_gap_note(by_benchmark, mode, k, sizes))


def to_png(fig, dpi: int = DPI) -> bytes:
    """A figure as PNG bytes (closed afterwards): for ``IPython.display.Image``, which embeds
    the image in the notebook so it shows on GitHub."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def run_bars(scores: pd.DataFrame, path: Path | None = None, title: str = ""):
    """F1 per method of one's own run (``AttributionResult.score()`` frames concatenated: columns
    method, k, f1, n_tasks), one bar per k; returns the figure, or saves it to ``path``."""
    import seaborn as sns

    methods = _method_order(scores.method)
    ks = sorted(set(scores.k))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, 2 + 0.9 * len(methods)), 3.6))
    width = 0.8 / max(len(ks), 1)
    x = np.arange(len(methods))
    for i, k in enumerate(ks):
        sub = scores[scores.k == k].set_index("method").reindex(methods)
        ax.bar(x + i * width, sub.f1, width, label=f"k={k}", color=PALETTE[i % len(PALETTE)])
    n = int(scores.n_tasks.max()) if "n_tasks" in scores and len(scores) else 0
    ax.set_xticks(x + width * (len(ks) - 1) / 2, [method_label(m) for m in methods], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("F1 against the human keywords")
    ax.set_ylim(0, 1)
    ax.set_title(title or f"F1 per method ({n} tasks scored)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        return _save(fig, Path(path))
    return fig


def all_figures(tables, output_dir: str | os.PathLike, k: int = 10) -> list[Path]:
    output_dir = Path(output_dir)
    out = []
    for mode in sorted(set(tables.table2["mode"])):
        out.append(metric_bars(tables.table2, mode, output_dir / f"metrics_{mode}.png"))
        if "f1_lo" in tables.table3 and "n_models" in tables.table3:
            out.append(table3_intervals(tables.table3, mode, output_dir / f"table3_intervals_{mode}.png"))
        if getattr(tables, "findings", None) is not None:
            out.append(findings_forest(tables.findings, mode, output_dir / f"findings_{mode}.png"))
        out.append(heatmap(tables.table2, mode, k, output_dir / f"heatmap_f1_k{k}_{mode}.png"))
        out.append(label_coverage(tables.label_coverage, mode, k,
                                  output_dir / f"label_types_k{k}_{mode}.png"))
        if len(tables.by_benchmark):
            sizes = (getattr(tables, "prompt_sizes", None) or {}).get(mode)
            out.append(benchmarks(tables.by_benchmark, mode, k,
                                  output_dir / f"benchmarks_k{k}_{mode}.png", sizes))
    return out
