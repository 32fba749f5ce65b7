"""Write analysis/reproduce.ipynb (unexecuted). Kept so the notebook's cells are reviewable
as code; `make reproduce` executes the notebook with papermill."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("# Reproducing the paper's alignment tables\n\n"
       "Scores every attention result in `experiment_result/` (the published pickles of the "
       "FSE 2024 study, plus any of our own `*.jsonl` runs) against the human keyword labels, in "
       "two modes:\n\n"
       "* **paper**: the published labels (`gradient_based/dataset.pkl`, MBPP spans one "
       "character short) and the published alignment quirks (InCoder gradient files located "
       "with spaces removed). This must reproduce Table 3 exactly.\n"
       "* **corrected**: corrected labels (exclusive MBPP ends, the six `None` words restored, "
       "the stray `Type2` rows dropped) and plain left-to-right alignment.\n\n"
       "Outputs go to `analysis/output/`: `table2.csv`, `table3.csv`, "
       "`table2_by_benchmark.csv`, `label_coverage.csv` and PNG figures, built from the "
       "published results only; with runs of your own in `RESULT_DIR`, the tables and figures "
       "including them go to `USER_OUTPUT_DIR` (git-ignored `build/output/`).\n\n"
       "Parameters (next cell; papermill `-p NAME value`): `RESULT_DIR` (published pickles in "
       "`published/`, our `*.jsonl`), `OUTPUT_DIR`, `USER_OUTPUT_DIR`, `DATA_MIRROR` (\"\": "
       "`$DATA_MIRROR`, else download), `FIGURE_K` (k of the figures shown), `RESAMPLES` and "
       "`PERMUTATIONS` (bootstrap resamples and permutations of the intervals and tests; "
       "smaller only for smoke runs)."),
    code("# Parameters (papermill): see the first cell\nRESULT_DIR = \"../experiment_result\"\n"
         "OUTPUT_DIR = \"output\"\nUSER_OUTPUT_DIR = \"../build/output\"\nDATA_MIRROR = \"\"\n"
         "FIGURE_K = 10\nRESAMPLES = 1000\nPERMUTATIONS = 2000",
         metadata={"tags": ["parameters"]}),
    code("import os\nimport time\n\nimport pandas as pd\nfrom IPython.display import Image, display\n\n"
         "from common import plotting, tables\n\n"
         "pd.set_option(\"display.width\", 200)\n"
         "pd.set_option(\"display.max_columns\", 20)\n"
         "start = time.perf_counter()\n"
         "T = tables.reproduce(RESULT_DIR, OUTPUT_DIR, mirror=DATA_MIRROR or None,\n"
         "                     user_output_dir=USER_OUTPUT_DIR, resamples=RESAMPLES,\n"
         "                     permutations=PERMUTATIONS)\n"
         "n = T.table2[[\"mode\", \"model\", \"method\"]].drop_duplicates().shape[0]\n"
         "print(f\"fetched, loaded, scored and plotted {n} (mode, model, method) results \"\n"
         "      f\"in {time.perf_counter() - start:.1f} s\")\n"
         "print(sorted(os.listdir(OUTPUT_DIR)))\n"
         "# the figures shown: those with your own runs when there are any\n"
         "published = set(plotting.MODEL_ORDER) | {\"baseline\"}\n"
         "SHOWN = OUTPUT_DIR if set(T.table2.model) <= published else USER_OUTPUT_DIR"),
    md("## Table 3, paper mode, beside the published values\n\n"
       "Mean over the five open models; F1 at the paper's rounding (0.1%), alpha at 0.01."),
    code("cmp = tables.compare_with_paper(T.table3, \"paper\")\n"
         "print(f\"{cmp.match.sum()} of {len(cmp)} cells equal the published Table 3\")\n"
         "assert cmp.match.all(), cmp[~cmp.match]\n"
         "cmp"),
    md("## Table 3, corrected mode"),
    code("tables.wide_table3(T.table3, \"corrected\")"),
    md("## What the corrections change\n\n"
       "`corrected - paper` for the mean over the five open models. Most of the F1 gain comes "
       "from the MBPP spans: the published spans are one character short, so every overlap with "
       "an MBPP keyword was cut."),
    code("tables.summary_deltas(T.table3).round(3)"),
    md("## Do the paper's findings survive?\n\n"
       "Checked per mode, k and metric (see `common.tables.findings`)."),
    code("F = tables.findings(T.table3)\nF.round(3)"),
    code("for mode in (\"paper\", \"corrected\"):\n"
         "    f = F[F[\"mode\"] == mode]\n"
         "    print(f\"{mode:>9}: BERT masking best in {f.bert_best.sum()}/{len(f)} cells; \"\n"
         "          f\"gradient > self-attention in {f.gradient_over_self_attention.sum()}/{len(f)}; \"\n"
         "          f\"coding > reading pairs: {', '.join(f.coding_over_reading)}\")"),
    md("## Per model (Table 2), k = 10"),
    code("t2 = T.table2[T.table2.k == 10].pivot_table(index=\"method\", columns=[\"mode\", \"model\"], "
         "values=\"f1\")\nt2.round(3)"),
    md("## Figures"),
    md("F1 and alpha of every method and model at k = 5, 10, 20 are in "
       "`output/metrics_paper.png` and `output/metrics_corrected.png`; shown here: the "
       "method x model heatmap, alignment per label type and HumanEval against MBPP."),
    code("for name in sorted(os.listdir(SHOWN)):\n"
         "    if (name.endswith(f\"k{FIGURE_K}_corrected.png\")\n"
         "            or name == f\"heatmap_f1_k{FIGURE_K}_paper.png\"):\n"
         "        print(name)\n"
         "        display(Image(filename=os.path.join(SHOWN, name), width=800))"),
]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "attention-alignment", "display_name": "Python (attention-alignment)",
                             "language": "python"}
nbf.write(nb, "analysis/reproduce.ipynb")
