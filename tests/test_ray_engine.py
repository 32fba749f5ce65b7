"""The Ray engine on a local 2-CPU cluster with a tiny model: a worker killed mid-run is
restarted and its task retried, a bug in a worker stops the run with nothing recorded for the
task in flight, and the rerun resumes to the same result files as one process, byte for byte."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import ray

from attention_alignment import catalogue, ray_engine, runner
from common import backends
from tests.ray_faults import BugWhileMarked, KillWorkerOnce

OPTIONS = {"batch_size": 2, "cache_path": None}


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


def methods(kill_marker, bug_marker, kill_task, bug_task):
    """Two real methods and the two faults, each armed by its marker file on its task."""
    return catalogue.select("saliency_coding,coding_last") + [
        KillWorkerOnce().configure(marker=str(kill_marker), task=kill_task),
        BugWhileMarked().configure(marker=str(bug_marker), task=bug_task)]


def test_ray_survives_a_killed_worker_stops_on_a_bug_and_resumes_to_the_files_of_one_process(
        cluster, tasks, tmp_path):
    kill, bug = tmp_path / "kill", tmp_path / "bug"
    chosen = methods(kill, bug, kill_task=tasks[1].task_id, bug_task=tasks[4].task_id)
    one = runner.run(chosen, backends.build("tiny-gpt2", **OPTIONS), tasks, tmp_path / "one",
                     progress=False)
    complete = files(tmp_path / "one")
    assert len(complete) == 4 and sum(one.scored.values()) + sum(one.failed.values()) == 4 * len(tasks)

    # 1. a worker process dies on task 1 (Ray restarts it and retries), a bug on task 4 stops the run
    kill.write_text("")
    bug.write_text("")
    with pytest.raises(ValueError, match="a bug in the method") as info:
        ray_engine.run(chosen, "tiny-gpt2", OPTIONS, tasks, tmp_path / "ray", workers=2, progress=False)
    assert any(f"while running bug_while_marked on {tasks[4].task_id}" in n for n in info.value.__notes__)
    assert not kill.exists() and (tmp_path / "kill.claimed").exists(), "the worker was not killed"
    for name, data in files(tmp_path / "ray").items():
        # recorded in task order up to the chunk with the bug (chunks of two tasks): the first
        # four tasks, the killed worker's retried task among them, byte for byte
        header, *records = data.decode().splitlines()
        assert [json.loads(r)["task_id"] for r in records] == [t.task_id for t in tasks[:4]], name
        assert complete[name].startswith(data), name

    # 2. the rerun (one worker: one actor start less) resumes: the files of one process, byte for byte
    bug.unlink()
    summary = ray_engine.run(chosen, "tiny-gpt2", OPTIONS, tasks, tmp_path / "ray", workers=1,
                             progress=False)
    assert (summary.skipped, summary.computed) == (4, 2)
    assert files(tmp_path / "ray") == complete


def test_cli_refuses_a_budget_with_ray(capsys, tmp_path):
    code = runner.main(["--model", "gpt-4o", "--engine", "ray", "--max-cost-usd", "1",
                        "--output", str(tmp_path), "--no-progress", "--methods", "shap_perturbation"])
    assert code == runner.EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --max-cost-usd is a budget "
                                                                      "per process")
