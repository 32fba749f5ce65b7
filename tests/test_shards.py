"""Deterministic task shards (common.shards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.paths import ROOT
from common.shards import in_shard, parse_shard, shard_of


@pytest.mark.parametrize(("text", "expected"), [("0/3", (0, 3)), ("2/3", (2, 3)), ("0/1", (0, 1)),
                                                (" 4 / 10 ", (4, 10))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("3/3", "must be in 0..2, got '3/3' \\(shards are 0-based"),
    ("5/3", "must be in 0..2, got '5/3'$"),
    ("0/0", "at least 1"),
    ("-1/3", "expected I/N"),
    ("1", "expected I/N"),
    ("a/b", "expected I/N"),
    ("1/3/4", "expected I/N"),
    ("", "expected I/N"),
])
def test_parse_shard_rejects(text, message):
    with pytest.raises(ValueError, match=f"^--shard: .*{message}"):
        parse_shard(text)


def test_shard_is_sha256_of_the_task_id():
    # FIPS 180-2 test vector: sha256("abc") starts with ba7816bf8f01cfea
    first8 = 0xBA7816BF8F01CFEA
    assert [shard_of("abc", n) for n in (2, 3, 7)] == [first8 % 2, first8 % 3, first8 % 7]
    assert in_shard("abc", first8 % 3, 3) and not in_shard("abc", (first8 + 1) % 3, 3)
    with pytest.raises(ValueError, match="shard index"):
        in_shard("abc", 3, 3)
    with pytest.raises(ValueError, match="number of shards"):
        shard_of("abc", 0)


def test_real_task_ids_partition_into_balanced_shards(corrected):
    ids = [t.task_id for t in corrected.select("all", None)]
    assert len(ids) == 1138
    shards = [[t for t in ids if in_shard(t, i, 3)] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(ids)  # each task in exactly one shard
    for shard in shards:
        assert 0.30 <= len(shard) / len(ids) <= 0.37, [len(s) for s in shards]


def test_same_shards_in_another_python_process():
    ids = [f"HumanEval/{k}" for k in range(50)] + [f"mbpp/{k}" for k in range(50)]
    here = [shard_of(t, 3) for t in ids]
    code = ("import json, sys; from common.shards import shard_of; "
            "print(json.dumps([shard_of(t, 3) for t in json.loads(sys.argv[1])]))")
    # another string-hash seed: Python's hash() would differ, the shards must not
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == here
    assert len(set(here)) == 3
