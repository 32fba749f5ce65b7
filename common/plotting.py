"""Figures of the analysis notebooks (matplotlib, PNG, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import results  # noqa: E402
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


def metric_bars(table2: pd.DataFrame, mode: str, path: Path) -> Path:
    """F1 and alpha per method and model, one row of panels per k."""
    t = table2[table2["mode"] == mode]
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
                ax.bar(x + i * width, vals, width, label=model)
            ax.set_xticks(x + width * (len(models) - 1) / 2, methods, rotation=60, ha="right",
                          fontsize=8)
            ax.set_title(f"{metric.upper() if metric == 'f1' else 'Krippendorff alpha'} @ k={k}"
                         f" ({mode})")
            ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(fontsize=7, ncol=2)
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
        out.append(heatmap(tables.table2, mode, k, output_dir / f"heatmap_f1_k{k}_{mode}.png"))
        out.append(label_coverage(tables.label_coverage, mode, k,
                                  output_dir / f"label_types_k{k}_{mode}.png"))
        if len(tables.by_benchmark):
            out.append(benchmarks(tables.by_benchmark, mode, k,
                                  output_dir / f"benchmarks_k{k}_{mode}.png"))
    return out
