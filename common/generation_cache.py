"""On-disk cache of model generations keyed by (model, settings, prompt text).

Perturbation methods send many near-identical prompts through a model, and SHAP sends the same
coalition many times; a rerun after a crash must not pay again (GPU time or API money). SQLite
gives atomic commits per entry and safe concurrent use by several threads of one process.

Values are JSON objects (a HF continuation, or a chat answer with its usage). Entries are
validated on read: a row that does not decode to a JSON object is treated as a miss and
replaced, so a corrupted cache degrades to regeneration instead of wrong scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from .paths import ROOT

#: Default location; ``.cache/`` is git-ignored.
DEFAULT_PATH = Path(os.environ.get("ATTN_GENERATION_CACHE", ROOT / ".cache" / "generations.sqlite"))


def cache_key(model: str, settings: dict, prompt: str) -> str:
    """Stable key: every setting that can change the output is part of it."""
    blob = json.dumps([model, settings, prompt], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GenerationCache:
    """A small key -> JSON-object store. ``path=None`` keeps it in memory (tests, benches)."""

    def __init__(self, path: str | os.PathLike | None = DEFAULT_PATH):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared under a lock: the chat backend calls from worker threads
        self._conn = sqlite3.connect(str(self.path) if self.path else ":memory:",
                                     check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            if self.path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS generations "
                               "(key TEXT PRIMARY KEY, model TEXT, value TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get(self, model: str, settings: dict, prompt: str) -> dict | None:
        key = cache_key(model, settings, prompt)
        with self._lock:
            row = self._conn.execute("SELECT value FROM generations WHERE key = ?", (key,)).fetchone()
        value = None
        if row is not None:
            try:
                value = json.loads(row[0])
            except (TypeError, json.JSONDecodeError):
                value = None
            if not isinstance(value, dict):
                value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, model: str, settings: dict, prompt: str, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError("cache values are JSON objects")
        key = cache_key(model, settings, prompt)
        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO generations (key, model, value) VALUES (?, ?, ?)",
                               (key, model, json.dumps(value, ensure_ascii=False)))

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
