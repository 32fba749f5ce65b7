"""The Ray engine on a local 2-CPU cluster with a tiny model: the same result files as one
process, a worker killed mid-run restarted with its task retried, a bug in a worker stopping the
run with nothing recorded for the task in flight, and the rerun resuming."""

from __future__ import annotations

import dataclasses
import os

import pytest
import ray

from attention_alignment import catalogue, ray_engine, runner
from common import backends
from tests.ray_faults import BugWhileMarked, KillWorkerOnce

OPTIONS = {"batch_size": 2, "cache_path": None, "attention": True}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray cluster for the module (starting one takes seconds)."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no token file under ~/.ray for a throwaway cluster
    os.environ.pop("RAY_ADDRESS", None)
    ray_engine.connect(num_cpus=2, include_dashboard=False, log_to_driver=False,
                       _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def tasks(corrected):
    picked = corrected.select("humaneval", 3) + corrected.select("mbpp", 3)
    return [dataclasses.replace(t, reference="return x") for t in picked]


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def methods(kill_marker, bug_marker, task):
    """Two real methods and the two faults, each armed by its marker file on ``task``."""
    return catalogue.select("saliency_coding,coding_last") + [
        KillWorkerOnce().configure(marker=str(kill_marker), task=task),
        BugWhileMarked().configure(marker=str(bug_marker), task=task)]


def test_ray_gives_the_files_of_one_process_and_survives_a_killed_worker(cluster, tasks, tmp_path):
    kill = tmp_path / "kill"
    chosen = methods(kill, tmp_path / "no-bug", tasks[3].task_id)
    one = runner.run(chosen, backends.build("tiny-gpt2", **OPTIONS), tasks, tmp_path / "one",
                     progress=False)
    kill.write_text("")
    summary = ray_engine.run(chosen, "tiny-gpt2", OPTIONS, tasks, tmp_path / "ray", workers=2,
                             progress=False)
    assert not kill.exists() and (tmp_path / "kill.claimed").exists(), "the worker was not killed"
    assert summary.computed == len(tasks) and summary.scored == one.scored
    assert files(tmp_path / "ray") == files(tmp_path / "one")
    assert len(files(tmp_path / "one")) == 4


def test_a_bug_in_a_worker_stops_the_run_and_the_rerun_resumes(cluster, tasks, tmp_path):
    bug = tmp_path / "bug"
    chosen = methods(tmp_path / "no-kill", bug, tasks[4].task_id)
    runner.run(chosen, backends.build("tiny-gpt2", **OPTIONS), tasks, tmp_path / "one", progress=False)
    bug.write_text("")
    with pytest.raises(ValueError, match="a bug in the method") as info:
        ray_engine.run(chosen, "tiny-gpt2", OPTIONS, tasks, tmp_path / "ray", workers=2, progress=False)
    assert any(f"while running bug_while_marked on {tasks[4].task_id}" in n for n in info.value.__notes__)
    complete = files(tmp_path / "one")
    for name, data in files(tmp_path / "ray").items():
        # recorded in task order, up to the chunk before the bug: a prefix of the complete file
        assert complete[name].startswith(data) and tasks[4].task_id not in data.decode(), name
    bug.unlink()
    summary = ray_engine.run(chosen, "tiny-gpt2", OPTIONS, tasks, tmp_path / "ray", workers=1,
                             progress=False)
    assert summary.computed in (2, 4)  # chunks of two tasks: the one with the bug and maybe one more
    assert files(tmp_path / "ray") == files(tmp_path / "one")


def test_cli_refuses_a_budget_with_ray(capsys, tmp_path):
    code = runner.main(["--model", "tiny-gpt2", "--engine", "ray", "--max-cost-usd", "1",
                        "--output", str(tmp_path), "--no-progress", "--methods", "shap_perturbation"])
    assert code == runner.EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --max-cost-usd is a budget "
                                                                      "per process")
