"""Adding a method takes one module (tests/occlusion.py) and this test: the catalogue takes it,
the one CLI lists it and runs it end to end, and its results load and score like any other."""

from __future__ import annotations

import pytest

from attention_alignment import catalogue, runner
from common.results import AttributionResult
from tests.occlusion import Occlusion
from tests.perturbation_fakes import RuleGenerator, mbpp_task


@pytest.fixture
def occlusion(monkeypatch):
    monkeypatch.setattr(catalogue, "_CATALOGUE", dict(catalogue._CATALOGUE))  # undone after the test
    return catalogue.add(Occlusion())


def test_scores_by_hand():
    task = mbpp_task("sort the numbers")
    out = Occlusion().attribute(task, RuleGenerator({"sort": "return sorted ( xs )"}))
    # only deleting "sort" changes the code: "def f ( xs ) : return sorted ( xs )" -> "def f ( xs ) :"
    assert [task.prompt[a:b] for a, b in out.spans] == ["sort", "the", "numbers"]
    assert out.scores[1] == out.scores[2] == 0 and out.scores[0] > 0.5
    assert out.details == {"n_generations": 4}


def test_a_thirteenth_method_runs_through_the_one_cli(occlusion, tmp_path, capsys, mirror):
    assert runner.main(["--list-methods"]) == 0
    assert "occlusion_perturbation" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already in the catalogue"):
        catalogue.add(Occlusion())
    argv = ["--methods", "occlusion_perturbation,saliency_reading", "--model", "tiny-gpt2",
            "--benchmark", "mbpp", "--limit", "2", "--output", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache.sqlite"), "--no-progress"]
    assert runner.main(argv) == 0, capsys.readouterr().err
    assert "occlusion_perturbation       scored    2" in capsys.readouterr().out
    result = AttributionResult.load(tmp_path / "out" / "occlusion_perturbation_tiny-gpt2.jsonl")
    assert len(result.task_ids) == 2 and result.meta["method"]["name"] == "occlusion_perturbation"
    assert result.score(ks=(5,)).n_tasks.tolist() == [2]
    # both methods saw the same continuation of each task (one cached generation)
    other = AttributionResult.load(tmp_path / "out" / "saliency_reading_tiny-gpt2.jsonl")
    assert other.generations == result.generations
    # a rerun resumes: nothing left to do
    assert runner.main(argv) == 0 and "0 tasks computed, 2 already done" in capsys.readouterr().out
