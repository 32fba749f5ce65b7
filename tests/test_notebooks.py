"""The notebook tier: every committed notebook executed with papermill on small offline
parameters (tiny random models, one task, the published data from the mirror); fails on any
error. Select it alone with ``pytest -m notebooks``; it also runs in ``make test`` and CI."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = ROOT.parent / "shared"

pytestmark = pytest.mark.notebooks


@pytest.fixture(autouse=True)
def kernel_env(monkeypatch):
    # the kernel (a subprocess) imports this checkout, not an installed copy, on one thread
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _execute(notebook: str, out: Path, parameters: dict) -> nbformat.NotebookNode:
    src = ROOT / notebook
    target = out / src.name
    papermill.execute_notebook(str(src), str(target), parameters=parameters, kernel_name="python3",
                               cwd=str(src.parent), progress_bar=False, log_output=False)
    return nbformat.read(target, as_version=4)


def _pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)


FAMILY = [("self_attention_based/self_attention.ipynb", {}),
          ("gradient_based/gradient.ipynb", {"METHODS": "saliency_reading,inputxgradient_reading",
                                             "FAMILY": None}),
          ("perturbation_based/perturbation.ipynb", {"OPTIONS": {"nsamples": 8}})]


@pytest.mark.parametrize("notebook,extra", FAMILY, ids=[n for n, _ in FAMILY])
def test_family_notebook_runs_on_a_tiny_model(notebook, extra, tmp_path, monkeypatch):
    params = {"MODEL": "tiny-gpt2", "LIMIT": 1, "RESULT_DIR": str(tmp_path / "results"),
              "SHOW_METHOD": extra.get("METHODS", "").split(",")[0] or None, **extra}
    if params["SHOW_METHOD"] is None:
        params.pop("SHOW_METHOD")
    if "self_attention" in notebook:
        params["SHOW_METHOD"] = "reading_last"  # a random model writes no function to code on
    nb = _execute(notebook, tmp_path, params)
    assert list((tmp_path / "results").glob("*.jsonl")), "the run wrote no result file"
    assert _pngs(nb) >= 1, "no embedded PNG figure"


def test_reproduce_notebook_on_the_published_data(tmp_path):
    if not (MIRROR / "upstream").is_dir():
        pytest.fail(f"the published data mirror {MIRROR} is missing")
    nb = _execute("analysis/reproduce.ipynb", tmp_path,
                  {"DATA_MIRROR": str(MIRROR), "OUTPUT_DIR": str(tmp_path / "output"),
                   "USER_OUTPUT_DIR": str(tmp_path / "user"), "RESAMPLES": 20, "PERMUTATIONS": 20,
                   "RESULT_DIR": str(ROOT / "experiment_result")})
    assert (tmp_path / "output" / "table3.csv").is_file()
    assert _pngs(nb) >= 1


def test_error_patterns_notebook_on_a_few_generations(tmp_path):
    nb = _execute("analysis/error_patterns.ipynb", tmp_path,
                  {"MIRROR": str(MIRROR), "LIMIT": 20, "WORKERS": 1})
    assert _pngs(nb) >= 1


def test_every_notebook_documents_its_parameters():
    """Each notebook has a parameters cell and says what its parameters are before or in it."""
    notebooks = sorted(p.relative_to(ROOT) for p in ROOT.glob("*/*.ipynb"))
    assert len(notebooks) == 5
    for path in notebooks:
        nb = nbformat.read(ROOT / path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, path
        assert params[0].source.startswith("# Parameters"), path
        assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])], path
