"""The SQLite generation cache: keys, persistence, corrupted rows, concurrent writers."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.generation_cache import GenerationCache, cache_key


def test_round_trip_and_every_key_part_matters(tmp_path):
    c = GenerationCache(tmp_path / "g.sqlite")
    c.put("m", {"max_new_tokens": 5}, "p", {"text": "x"})
    assert c.get("m", {"max_new_tokens": 5}, "p") == {"text": "x"}
    assert c.get("m", {"max_new_tokens": 6}, "p") is None
    assert c.get("m2", {"max_new_tokens": 5}, "p") is None
    assert c.get("m", {"max_new_tokens": 5}, "p ") is None  # a trailing space is another prompt
    assert (c.hits, c.misses) == (1, 3)
    # settings order does not matter, values do
    assert cache_key("m", {"a": 1, "b": 2}, "p") == cache_key("m", {"b": 2, "a": 1}, "p")


def test_persists_across_instances(tmp_path):
    GenerationCache(tmp_path / "g.sqlite").put("m", {}, "p", {"text": "kept"})
    assert GenerationCache(tmp_path / "g.sqlite").get("m", {}, "p") == {"text": "kept"}


def test_corrupted_rows_are_misses(tmp_path):
    path = tmp_path / "g.sqlite"
    c = GenerationCache(path)
    c.put("m", {}, "a", {"text": "ok"})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE generations SET value = 'not json{'")
    assert GenerationCache(path).get("m", {}, "a") is None
    with sqlite3.connect(path) as db:
        db.execute("UPDATE generations SET value = '[1, 2]'")
    assert GenerationCache(path).get("m", {}, "a") is None
    with pytest.raises(TypeError):
        c.put("m", {}, "a", ["not", "an", "object"])


def test_threads_share_one_cache(tmp_path):
    c = GenerationCache(tmp_path / "g.sqlite")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: c.put("m", {}, f"p{i}", {"text": str(i)}), range(40)))
    assert len(c) == 40 and c.get("m", {}, "p7") == {"text": "7"}
