"""Clean executed notebooks before they are committed (`make notebooks` runs this):

* drop papermill's injected-parameters cell (the parameters cell keeps the defaults);
* drop papermill's and the kernel's run metadata (timestamps, durations, execution times);
* drop stderr streams (warnings, progress bars) and widget views;
* replace this machine's paths (the checkout, its parent, the environment, the home folder)
  with relative names, via :func:`analysis.report.portable`;
* number cell ids in order and set the project's kernel, so a rerun changes only real outputs.

    python tools/clean_notebooks.py NOTEBOOK...
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.report import portable  # noqa: E402

KERNELSPEC = {"display_name": "Python (attention-alignment)", "language": "python",
              "name": "attention-alignment"}
DROP_OUTPUT_TYPES = {"application/vnd.jupyter.widget-view+json"}


def _portable(value):
    if isinstance(value, str):
        return portable(value)
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    return value


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = [t for t in cell.metadata.get("tags", []) if t != "injected-parameters"]
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                continue
            if "data" in out:
                for key in DROP_OUTPUT_TYPES & set(out.data):
                    del out.data[key]
                if not out.data:
                    continue
                out.data = _portable(out.data)
            if out.output_type == "stream":
                out.text = portable(out.text)
            if out.output_type == "error":
                out.evalue = portable(out.evalue)
                out.traceback = _portable(out.traceback)
            outputs.append(out)
        cell.outputs = outputs
    nb.cells = cells
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def main(paths: list[str]) -> int:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(clean(nb), path)
        print(f"cleaned {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
