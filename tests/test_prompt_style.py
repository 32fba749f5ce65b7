"""Prompt styles of the generation step (common.dataset PROMPT_STYLES; the runner's
--prompt-style): the signature style adds the function's def line, keeps the scored region, and
a result file made with one style refuses another."""

from __future__ import annotations

import dataclasses
import json

import pytest

from analysis import generations
from attention_alignment import catalogue, runner
from common import dataset, results
from common.backends import HFBackend
from common.tiny import tiny_model


def test_signature_style_keeps_the_labelled_text_first(corrected):
    t = corrected.by_id()["mbpp/602"]
    s = t.with_prompt_style("signature")
    assert t.model_prompt == t.prompt + dataset.MBPP_SUFFIX  # study: unchanged
    assert s.model_prompt == t.prompt + "\ndef first_repeated_char(str1):"
    assert s.model_prompt.startswith(s.prompt) and s.region == t.region and s.keywords == t.keywords
    he = corrected.select("humaneval", 1)[0]
    assert he.with_prompt_style("signature").model_prompt == he.model_prompt
    with pytest.raises(ValueError, match="prompt style"):
        t.with_prompt_style("fancy")


def test_signature_from_the_first_test_when_the_reference_has_none(corrected):
    t = dataclasses.replace(corrected.by_id()["mbpp/602"], reference="first_repeated_char = None\n")
    assert dataset.mbpp_signature(t) == "def first_repeated_char(arg1):"


def test_every_mbpp_task_gets_a_signature(corrected):
    mbpp = corrected.with_prompt_style("signature").select("mbpp")
    assert all(t.model_prompt.startswith(t.prompt + "\ndef " + t.entry_point + "(") for t in mbpp)


def test_a_signature_style_completion_is_cut_after_its_own_header(corrected):
    t = corrected.by_id()["mbpp/602"].with_prompt_style("signature")
    c = generations.saved_candidate("toy", t, "\n    return str1[0]\n")
    assert c.extraction.code == "def first_repeated_char(str1):\n    return str1[0]\n"
    assert c.extraction.alias_of is None


def test_runner_records_and_matches_the_style(tmp_path, corrected):
    lm = tiny_model("gpt2")
    task = dataclasses.replace(corrected.select("mbpp", 1)[0], reference="return x")
    chosen = catalogue.select("reading_first", None)
    runner.run(chosen, HFBackend(lm), [task.with_prompt_style("signature")], tmp_path, progress=False)
    (path,) = tmp_path.glob("*.jsonl")
    assert json.loads(path.read_text().splitlines()[0])["meta"]["prompt_style"] == "signature"
    with pytest.raises(results.ResultFileError, match="prompt_style"):
        runner.run(chosen, HFBackend(lm), [task], tmp_path, progress=False)
    # a file from before the option is study-style: a signature run refuses it
    header, *rest = path.read_text().splitlines()
    h = json.loads(header)
    del h["meta"]["prompt_style"]
    path.write_text("\n".join([json.dumps(h), *rest]) + "\n")
    with pytest.raises(results.ResultFileError, match="prompt_style='study'"):
        runner.run(chosen, HFBackend(lm), [task.with_prompt_style("signature")], tmp_path, progress=False)
    runner.run(chosen, HFBackend(lm), [task], tmp_path, progress=False)  # study: resumes


def test_cli_rejects_an_unknown_style(capsys):
    with pytest.raises(SystemExit) as exc:
        runner.main(["--prompt-style", "fancy"])
    assert exc.value.code == 2 and "--prompt-style" in capsys.readouterr().err
