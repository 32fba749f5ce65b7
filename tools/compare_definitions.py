"""How much the unified definitions move the results: the same model, tasks and methods run
under ``--definitions unified`` and ``--definitions paper``, scored side by side.

    python tools/compare_definitions.py --model smollm2 --limit 20 --shap-limit 5 --out build/definitions

Prints one row per method and k: F1 and alpha under each definition and the difference (corrected
labels). Generations are shared through the generation cache, so the second definition costs
only the attribution passes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from attention_alignment import runner
from common.results import AttributionResult, discover


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--limit", type=int, default=20, help="MBPP tasks for the ten model-internal methods")
    p.add_argument("--shap-limit", type=int, default=5, help="MBPP tasks for SHAP (0: skip)")
    p.add_argument("--out", default="build/definitions")
    p.add_argument("--threads", default="1")
    a = p.parse_args(argv)
    rows = []
    for definitions in ("unified", "paper"):
        out = Path(a.out) / definitions
        common = ["--model", a.model, "--benchmark", "mbpp", "--definitions", definitions,
                  "--output", str(out), "--threads", a.threads, "--no-progress"]
        if runner.main(common + ["--family", "all", "--limit", str(a.limit)]) != 0:
            return 1
        if a.shap_limit and runner.main(common + ["--methods", "shap_perturbation",
                                                  "--limit", str(a.shap_limit)]) != 0:
            return 1
        for *_, path in discover(out, out / "none"):
            frame = AttributionResult.load(path).score()
            frame["definitions"] = definitions
            rows.append(frame)
    table = pd.concat(rows).pivot_table(index=["method", "k"], columns="definitions",
                                        values=["f1", "alpha", "n_tasks"])
    table[("f1", "change")] = table[("f1", "unified")] - table[("f1", "paper")]
    table[("alpha", "change")] = table[("alpha", "unified")] - table[("alpha", "paper")]
    pd.set_option("display.width", 200)
    print(table.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
