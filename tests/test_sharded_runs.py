"""Sharded runs (``--shard I/N``): three shards of a run merge into exactly the unsharded result
(records, score rows byte for byte, the tables' entries and the error analysis' generations);
partial sets load with a warning; conflicting sets are refused; the CLI's options."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import defaultdict

import pytest

from analysis import generations
from attention_alignment import catalogue, runner
from common import results, shards, tables
from common.backends import HFBackend
from common.tiny import tiny_model

METHODS = ["saliency_coding", "inputxgradient_reading", "coding_last"]


@pytest.fixture(scope="module")
def tasks(corrected):
    """HumanEval and MBPP tasks with short references, including two MBPP ids that share one
    prompt text (the one case where the merge order could matter)."""
    every = corrected.select("all", None)
    by_prompt = defaultdict(list)
    for t in every:
        by_prompt[t.prompt].append(t.task_id)
    pair = next(ids for ids in by_prompt.values() if len(ids) == 2)
    wanted = {t.task_id for t in every[:4]} | {t.task_id for t in corrected.select("mbpp", 5)} | set(pair)
    # the second of the pair gets a longer budget: another generation, other scores
    picked = [dataclasses.replace(t, reference="return x + y * 2 - 1" if t.task_id == pair[1] else "return x")
              for t in every if t.task_id in wanted]
    assert len(picked) == len(wanted) >= 10
    return picked


def run(tasks, output, shard=None):
    backend = HFBackend(tiny_model("gpt2"), batch_size=4)
    return runner.run(catalogue.select(",".join(METHODS)), backend, tasks, output, progress=False,
                      shard=shard)


def records(result):
    return ({p: (ps.task_id, ps.spans.tolist(), ps.scores.tolist()) for p, ps in result.prompts.items()},
            result.failures, result.generations, result.details)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tasks):
    whole, sharded = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("sharded")
    run(tasks, whole)
    sizes = [run(tasks, sharded, (i, 3)).tasks for i in range(3)]
    return whole, sharded, sizes


def test_three_shards_partition_the_tasks_into_their_own_files(runs, tasks):
    whole, sharded, sizes = runs
    assert sum(sizes) == len(tasks) and all(sizes), sizes
    assert sorted(p.name for p in sharded.iterdir()) == sorted(
        f"{m}_tiny-gpt2.shard-{i}-of-3.jsonl" for m in METHODS for i in range(3))
    for i in range(3):
        path = results.result_path(sharded, "saliency_coding", "tiny-gpt2", (i, 3))
        header = json.loads(path.read_text().splitlines()[0])
        assert header["meta"]["shard"] == {"index": i, "count": 3, "tasks": sizes[i]}
    # tasks sharing a prompt text run in one shard
    for i in range(3):
        got = [t.prompt for t in shards.select(tasks, i, 3)]
        assert not set(got) & {t.prompt for j in range(3) if j != i for t in shards.select(tasks, j, 3)}


def test_merged_shards_equal_the_unsharded_run(runs, corrected):
    whole, sharded, _ = runs
    assert [d[:3] for d in results.discover(sharded)] == [d[:3] for d in results.discover(whole)]
    for (*_, one), (*_, merged_path) in zip(results.discover(whole), results.discover(sharded)):
        assert not merged_path.exists()  # the logical name of the set
        a, b = results.AttributionResult.load(one), results.AttributionResult.load(merged_path)
        assert records(a) == records(b)
        assert a.meta == b.meta
        assert b.shards.count == 3 and b.shards.present == (0, 1, 2) and not b.shards.partial
        csv_a = a.score(by_benchmark=True).to_csv(index=False)
        assert csv_a == b.score(by_benchmark=True).to_csv(index=False)
        assert "nan" not in csv_a.split("\n", 1)[1]


def test_tables_and_error_analysis_see_one_result_per_method(runs, corrected, tmp_path):
    whole, sharded, _ = runs
    empty = tmp_path / "none"
    entries = {d: tables.load_entries(d, empty, modes=["corrected"])["corrected"] for d in (whole, sharded)}
    assert len(entries[sharded]) == len(METHODS)
    _, index = tables.labels_of("corrected")
    from common.metrics import Scorer
    for ea, eb in zip(entries[whole], entries[sharded]):
        assert (ea.method, ea.model) == (eb.method, eb.model)
        for k in (5, 10, 20):
            assert Scorer(ea.ranked, index).score(k) == Scorer(eb.ranked, index).score(k)
    cands = {d: generations.saved_candidates(corrected, d) for d in (whole, sharded)}
    seen = {d: sorted((c.model, c.task.task_id, c.raw) for c in cands[d][0]) for d in cands}
    assert len(seen[whole]) == 10 and seen[whole] == seen[sharded]


def test_partial_sets_load_with_a_warning(runs, tmp_path):
    _, sharded, sizes = runs
    for p in sharded.glob("saliency_coding_*"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "saliency_coding_tiny-gpt2.shard-1-of-3.jsonl").unlink()
    last = tmp_path / "saliency_coding_tiny-gpt2.shard-2-of-3.jsonl"
    lines = last.read_text().splitlines(keepends=True)
    last.write_text("".join(lines[:-1]))  # shard 2 stopped one task early
    [(_, _, _, path)] = results.discover(tmp_path)
    with pytest.warns(results.PartialResultWarning, match=r"2 of 3 shards; missing 1; shard 2 has "
                                                          rf"{sizes[2] - 1} of {sizes[2]} tasks"):
        partial = results.AttributionResult.load(path)
    assert partial.shards.partial and partial.shards.missing == (1,)
    assert len(partial.done) == sizes[0] + sizes[2] - 1


def test_conflicting_shard_sets_are_refused(runs, tmp_path):
    _, sharded, _ = runs
    for p in sharded.glob("coding_last_*"):
        shutil.copy(p, tmp_path / p.name)
    other = tmp_path / "coding_last_tiny-gpt2.shard-0-of-2.jsonl"
    shutil.copy(tmp_path / "coding_last_tiny-gpt2.shard-0-of-3.jsonl", other)
    with pytest.raises(results.ResultFileError, match="different shard counts \\(2, 3\\)"):
        results.AttributionResult.load(tmp_path / "coding_last_tiny-gpt2.jsonl")
    other.unlink()
    (tmp_path / "coding_last_tiny-gpt2.jsonl").write_text(
        (tmp_path / "coding_last_tiny-gpt2.shard-0-of-3.jsonl").read_text())
    with pytest.raises(results.ResultFileError, match="both exist"):
        results.AttributionResult.load(tmp_path / "coding_last_tiny-gpt2.jsonl")


def test_a_run_that_would_make_a_second_result_is_refused_before_writing(runs, tasks, tmp_path):
    _, sharded, _ = runs
    for p in sharded.glob("*.shard-1-of-3.jsonl"):
        shutil.copy(p, tmp_path / p.name)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(results.ResultFileError, match="shard-1-of-3.jsonl exists: an unsharded run"):
        run(tasks, tmp_path)
    with pytest.raises(results.ResultFileError, match="shard-1-of-3.jsonl exists: shards of 2"):
        run(tasks, tmp_path, (0, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_shard_resumes_alone(runs, tasks, tmp_path):
    _, sharded, sizes = runs
    for p in sharded.glob("*.shard-0-of-3.jsonl"):
        lines = p.read_text().splitlines(keepends=True)
        (tmp_path / p.name).write_text("".join(lines[:-1]))  # the last task of shard 0 lost
    summary = run(tasks, tmp_path, (0, 3))
    assert (summary.tasks, summary.computed) == (sizes[0], 1)
    for p in sharded.glob("*.shard-0-of-3.jsonl"):
        assert (tmp_path / p.name).read_bytes() == p.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in sharded.glob("*-0-of-3*"))


def test_shard_selection_keeps_the_order_and_checks_the_index(tasks):
    parts = [shards.select(tasks, i, 3) for i in range(3)]
    for part in parts:
        assert part == [t for t in tasks if t in part]
    assert sorted(t.task_id for p in parts for t in p) == sorted(t.task_id for t in tasks)
    with pytest.raises(ValueError, match="0..2"):
        shards.select(tasks, 3, 3)


@pytest.mark.parametrize(("argv", "message"), [
    (["--shard", "3/3"], "--shard: the shard index must be in 0..2, got '3/3' (shards are 0-based"),
    (["--shard", "x"], "--shard: expected I/N"),
    (["--workers", "2"], "--workers applies to --engine ray only"),
])
def test_cli_shard_and_engine_options(argv, message, capsys, tmp_path):
    code = runner.main(["--model", "tiny-gpt2", "--output", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == runner.EXIT_USAGE
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert list(tmp_path.iterdir()) == []


def test_result_path_of_a_shard():
    assert results.result_path("out", "saliency_coding", "org/M", (2, 3)).name == \
        "saliency_coding_org--M.shard-2-of-3.jsonl"


def test_two_processes_write_one_generation_cache_at_once(tmp_path):
    """Concurrent shards on one machine share the SQLite (WAL) cache: nothing lost, no lock error."""
    import subprocess
    import sys

    from common.generation_cache import GenerationCache
    from common.paths import ROOT

    path = tmp_path / "cache.sqlite"
    GenerationCache(path).close()  # created (and switched to WAL) before the writers start
    code = ("import sys; from common.generation_cache import GenerationCache; "
            "c = GenerationCache(sys.argv[1]); "
            "[c.put('m', {}, f'{sys.argv[2]}-{i}', {'text': str(i)}) for i in range(300)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cache = GenerationCache(path)
    assert len(cache) == 600
    assert cache.get("m", {}, "b-299") == {"text": "299"} and cache.get("m", {}, "a-0") == {"text": "0"}


def test_api_run_takes_a_shard(tmp_path, corrected):
    import attention_alignment as aa

    summary = aa.run("saliency_coding", model="tiny-gpt2", limit=6, shard="1/2", output=tmp_path,
                     cache=tmp_path / "cache.sqlite", progress=False)
    expected = shards.select(corrected.select("mbpp", 6), 1, 2)
    assert summary.tasks == len(expected) > 0
    assert [p.name for p in tmp_path.glob("*.jsonl")] == ["saliency_coding_tiny-gpt2.shard-1-of-2.jsonl"]
    with pytest.warns(results.PartialResultWarning, match="1 of 2 shards; missing 0"):
        merged = results.AttributionResult.load(tmp_path / "saliency_coding_tiny-gpt2.jsonl")
    assert merged.done == {t.task_id for t in expected}
    with pytest.raises(ValueError, match="--shard"):
        aa.run("saliency_coding", model="tiny-gpt2", shard="2/2", output=tmp_path, progress=False)
