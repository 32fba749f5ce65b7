"""Figures of the analysis notebooks (matplotlib + seaborn, PNG, headless).

Where a table carries intervals (``*_lo``/``*_hi`` columns) the bars get 95% bootstrap error
bars; the baselines (model ``baseline``) are drawn as dashed reference lines, not bars.
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


def _method_order(methods) -> list[str]:
    known = [m for m in results.PAPER_METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


BASELINE_STYLE = {baselines.RANDOM: ("grey", "--"), baselines.FIRST_K: ("tab:brown", ":"),
                  baselines.RARE_WORDS: ("black", "-.")}


def _baseline_lines(ax, values: dict[str, float], vertical: bool = False) -> None:
    """Dashed reference line per baseline (method -> value)."""
    for method, v in values.items():
        if not np.isfinite(v):
            continue
        color, style = BASELINE_STYLE.get(method, ("grey", "--"))
        label = method.removeprefix("baseline_") + " baseline"
        if vertical:
            ax.axvline(v, color=color, linestyle=style, linewidth=1.2, label=label)
        else:
            ax.axhline(v, color=color, linestyle=style, linewidth=1.2, label=label)


def metric_bars(table2: pd.DataFrame, mode: str, path: Path) -> Path:
    """F1 and alpha per method and model, one row of panels per k; 95% bootstrap error bars
    where the table has them, baselines as reference lines."""
    t = table2[table2["mode"] == mode]
    base = t[t.model == baselines.MODEL]
    t = t[t.model != baselines.MODEL]
    ks = sorted(set(t.k))
    methods = _method_order(t.method)
    models = list(dict.fromkeys(t.model))
    fig, axes = plt.subplots(len(ks), 2, figsize=(15, 3.4 * len(ks)), squeeze=False)
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
                ax.bar(x + i * width, vals, width, label=model, yerr=yerr,
                       error_kw={"elinewidth": 0.6, "capsize": 0})
            b = base[base.k == k].set_index("method")[metric]
            _baseline_lines(ax, b.to_dict())
            ax.set_xticks(x + width * (len(models) - 1) / 2, methods, rotation=60, ha="right",
                          fontsize=8)
            ax.set_title(f"{metric.upper() if metric == 'f1' else 'Krippendorff alpha'} @ k={k}"
                         f" ({mode})")
            ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def table3_intervals(table3: pd.DataFrame, mode: str, path: Path) -> Path:
    """Five-model mean F1 and alpha per method with its 95% paired bootstrap interval (thick)
    and the range across the five models (thin), baselines as vertical reference lines."""
    import seaborn as sns

    t = table3[table3["mode"] == mode]
    five, base = t[t.n_models > 0], t[t.n_models == 0]
    ks = sorted(set(t.k))
    methods = _method_order(five.method)
    palette = sns.color_palette("colorblind", len(methods))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(ks), figsize=(5 * len(ks), 9), squeeze=False, sharey=True)
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
            ax.scatter(v, y, c=palette, zorder=3, s=30)
            _baseline_lines(ax, base[base.k == k].set_index("method")[metric].to_dict(), vertical=True)
            ax.set_yticks(y, methods, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{'F1' if metric == 'f1' else 'Krippendorff alpha'} @ k={k} ({mode})")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def findings_forest(findings: pd.DataFrame, mode: str, path: Path) -> Path:
    """Effect of each finding (five-model means; > 0: the paper's claim) with its 95% paired
    bootstrap interval, per k and metric; Holm-adjusted p in the labels."""
    import seaborn as sns

    f = findings[findings["mode"] == mode].reset_index(drop=True)
    labels = [f"{r.claim} ({r.metric}, k={r.k}) p_holm={r.p_holm:.3g}, {r.models_agree}/{r.n_models}"
              for r in f.itertuples()]
    colors = sns.color_palette("colorblind", 3)
    claim_color = {c: colors[i % 3] for i, c in enumerate(dict.fromkeys(f.claim))}
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(f) + 1.2))
    y = np.arange(len(f))
    err = np.stack([f.effect - f.effect_lo, f.effect_hi - f.effect]).clip(0)
    for i, r in f.iterrows():
        ax.errorbar(r.effect, i, xerr=err[:, [i]], fmt="o", color=claim_color[r.claim], capsize=3)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("effect (difference of five-model means)")
    ax.set_title(f"Paper's findings, paired tests over prompts ({mode})")
    fig.tight_layout()
    return _save(fig, path)


def heatmap(table2: pd.DataFrame, mode: str, k: int, path: Path, metric: str = "f1") -> Path:
    t = table2[(table2["mode"] == mode) & (table2.k == k)]
    grid = t.pivot_table(index="method", columns="model", values=metric)
    grid = grid.reindex(_method_order(grid.index))
    fig, ax = plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.45 * len(grid) + 1.5))
    im = ax.imshow(grid.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(grid.index)), grid.index)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.values[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < np.nanmean(grid.values) else "black")
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"{metric} @ k={k}, method x model ({mode})")
    fig.tight_layout()
    return _save(fig, path)


def _grouped_bars(grid: pd.DataFrame, ylabel: str, title: str, path: Path) -> Path:
    """One group of bars per row of ``grid`` (methods), one bar per column."""
    fig, ax = plt.subplots(figsize=(12, 4))
    x = np.arange(len(grid))
    width = 0.8 / max(len(grid.columns), 1)
    for i, column in enumerate(grid.columns):
        ax.bar(x + i * width, grid[column], width, label=column)
    ax.set_xticks(x + width * (len(grid.columns) - 1) / 2, grid.index, rotation=60, ha="right",
                  fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def label_coverage(coverage: pd.DataFrame, mode: str, k: int, path: Path) -> Path:
    """Share of human keywords of each type inside the top-k, mean over models."""
    t = coverage[(coverage["mode"] == mode) & (coverage.k == k)]
    grid = t.pivot_table(index="method", columns="label", values="coverage", aggfunc="mean")
    grid = grid.reindex(_method_order(grid.index))[[c for c in LABELS if c in grid.columns]]
    return _grouped_bars(grid, "share of human keywords in top-k",
                         f"Alignment per label type @ k={k} ({mode}, mean over models)", path)


def benchmarks(by_benchmark: pd.DataFrame, mode: str, k: int, path: Path) -> Path:
    """F1 per method on HumanEval against MBPP, mean over models."""
    t = by_benchmark[(by_benchmark["mode"] == mode) & (by_benchmark.k == k)]
    grid = t.pivot_table(index="method", columns="benchmark", values="f1", aggfunc="mean")
    grid = grid.reindex(_method_order(grid.index))
    return _grouped_bars(grid, "F1", f"HumanEval vs MBPP, F1 @ k={k} ({mode}, mean over models)",
                         path)


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
            out.append(benchmarks(tables.by_benchmark, mode, k,
                                  output_dir / f"benchmarks_k{k}_{mode}.png"))
    return out
