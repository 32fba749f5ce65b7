"""Write the three family notebooks (unexecuted) from one template, so they stay thin views of
the same API and never drift apart: each sets its parameters, runs its family through
``attention_alignment.runner``, scores the results and shows one prompt.

    python tools/make_family_notebooks.py        # then execute them with papermill
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

FAMILIES = {
    "self_attention_based/self_attention.ipynb": dict(
        title="Self-attention methods",
        what="The six self-attention methods of study section 3: `reading_*` (the attention row of the "
             "step that reads the prompt) and `coding_*` (of the step that writes the generated "
             "function's last token), over the first layer, the last layer and all layers "
             "(`VARIANT = \"paper\"`: the published layer-0 heads). One greedy generation and one "
             "forward pass per task; only the needed rows of each layer are kept.",
        selection='FAMILY = "self_attention"\nMETHODS = None', show="coding_last", extra=""),
    "gradient_based/gradient.ipynb": dict(
        title="Gradient methods",
        what="The four gradient methods of study section 3: `saliency_*` (norm of the gradient of a "
             "generated token's probability w.r.t. each input embedding) and `inputxgradient_*` "
             "(norm of gradient x embedding), for the step that reads the prompt (`_reading`) and "
             "the step that writes the generated function's last token (`_coding`); normalised "
             "over the step's input positions. One greedy generation, one forward and two "
             "backward passes per task.",
        selection='FAMILY = "gradient"\nMETHODS = None', show="inputxgradient_coding", extra=""),
    "perturbation_based/perturbation.ipynb": dict(
        title="Perturbation methods (BERT masking, SHAP)",
        what="The two perturbation methods of study section 3 (and SHAP's text-masker variant) for "
             "a Hugging Face model or a chat model behind an OpenAI-compatible API: a word matters "
             "as much as the generated code changes when the word is replaced (BERT masking: "
             "`bert-base-uncased`'s fill; SHAP: `[MASK]` in word coalitions). Chat models: set "
             "`MODEL` to the model id, `BACKEND_OPTIONS = {\"base_url\": ..., \"max_cost_usd\": 5}` "
             "(`OPENAI_API_KEY` holds the key). `METHODS = \"bert_perturbation\"` needs "
             "`bert-base-uncased` (from the hub, or `OPTIONS = {\"fill_model\": \"<folder>\"}`).",
        selection='FAMILY = None\nMETHODS = "shap_perturbation"', show="shap_perturbation",
        extra="OPTIONS = {}  # method options, e.g. {\"nsamples\": 50, \"fill_model\": \"<folder>\"}\n"
              "BACKEND_OPTIONS = {}  # e.g. {\"base_url\": \"http://127.0.0.1:8000/v1\"}\n"),
}

PARAMETERS = """# Parameters (papermill): see the first cell
{selection}
MODEL = "smollm2"  # smollm2, codegen, codeparrot, gptj, incoder, polycoder, a folder or a hub id
BENCHMARK = "mbpp"  # all | humaneval | mbpp
LIMIT = 2  # first n tasks (None: all)
DEFINITIONS = "unified"  # unified | paper (common/code_units.py)
VARIANT = "true"  # self-attention layers: true | paper | both
DEVICE = "cpu"
DTYPE = None  # None (float32) | "float16" | "bfloat16"
BATCH_SIZE = 8
THREADS = None  # torch CPU threads (None: the idle physical cores, printed)
RESULT_DIR = None  # None: experiment_result/ (git-ignored)
SHOW_METHOD = "{show}"
SHOW_TASK = None  # a task id, or None for the first scored one
TOP_K = 10
{extra}"""

RUN = """import pandas as pd

import attention_alignment as aa

summary = aa.run(METHODS, family=FAMILY, model=MODEL, benchmark=BENCHMARK, limit=LIMIT,
                 variant=VARIANT, definitions=DEFINITIONS, output=RESULT_DIR, device=DEVICE,
                 dtype=DTYPE, batch_size=BATCH_SIZE, threads=THREADS, progress=False{run_extra})
print(summary)"""

SCORE = """# F1 and alpha against the human keywords on the tasks done (corrected labels); the analysis
# notebook scores every result file beside the published models
from IPython.display import Image, display

from common import plotting

scores = pd.concat([aa.load(path).score(ks=(5, 10)) for path in summary.paths.values()],
                   ignore_index=True)
display(scores)
# embedded as a PNG, so the figure shows on GitHub too
display(Image(plotting.to_png(plotting.run_bars(scores, title=f"F1 per method: {MODEL}, "
                                                 f"{int(scores.n_tasks.max())} {BENCHMARK} tasks"))))"""

SHOW = """shown = aa.load(summary.paths[SHOW_METHOD]).show(SHOW_TASK, k=TOP_K)
display(shown)  # HTML in Jupyter
if hasattr(shown, "to_png"):  # the same as an image, for viewers that drop HTML styles (GitHub)
    display(Image(shown.to_png()))"""


def notebook(title, what, selection, show, extra):
    run_extra = ",\n                 backend_options=BACKEND_OPTIONS, **OPTIONS" if extra else ""
    cells = [
        md(f"# {title}\n\n{what}\n\n"
           "Parameters (the next cell; papermill `-p NAME value`): `FAMILY` or `METHODS` (names from "
           "`aa.methods()`), `MODEL`, `BENCHMARK`, `LIMIT`, `DEFINITIONS`, `VARIANT`, `DEVICE`, "
           "`DTYPE`, `BATCH_SIZE`, `THREADS`, `RESULT_DIR`, `SHOW_METHOD`, `SHOW_TASK`, `TOP_K`"
           + (", `OPTIONS`, `BACKEND_OPTIONS`" if extra else "") + ".\n\n"
           "Defaults: SmolLM2-135M (offline) on the first 2 MBPP tasks on the CPU; the test "
           "suite runs this notebook with `MODEL=\"tiny-gpt2\"`, `LIMIT=1` (a random model).\n\n"
           "All logic is in the package: the same run from a shell is `python -m attention_alignment` "
           "(`make attention`, `make perturbation`). Runs resume where they stopped."),
        code(PARAMETERS.format(selection=selection, show=show, extra=extra).rstrip() + "\n",
             metadata={"tags": ["parameters"]}),
        code(RUN.format(run_extra=run_extra)),
        code(SCORE),
        md("One prompt: each word shaded by its score, the method's top-k boxed, the human keywords "
           "underlined, and the code the model generated."),
        code(SHOW),
    ]
    nb = nbf.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python (attention-alignment)", "language": "python",
                                 "name": "attention-alignment"}
    return nb


if __name__ == "__main__":
    for path, spec in FAMILIES.items():
        nbf.write(notebook(**spec), ROOT / path)
        print(f"wrote {path}")
