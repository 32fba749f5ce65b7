"""Deterministic shards of the task list: ``--shard I/N`` runs the tasks of shard ``I`` of ``N``.

``I`` is 0-based: ``0 <= I < N`` (``0/3``, ``1/3``, ``2/3``). With a Slurm job array,
``#SBATCH --array=0-2`` and ``--shard $SLURM_ARRAY_TASK_ID/3``; an array numbered from 1
(``--array=1-3``) needs ``--shard $((SLURM_ARRAY_TASK_ID - 1))/3``.

A task belongs to shard ``int(sha256(task_id)[:8 bytes]) mod N``: the same on every machine, in
every Python run (Python's own ``hash`` of a string changes with ``PYTHONHASHSEED``) and whatever
the order or subset of tasks a run is given, so every task is in exactly one shard of ``N``.
The run loop shards benchmark tasks by their prompt text (:func:`select`).
"""

from __future__ import annotations

import hashlib
import re

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``, 0-based, or ValueError with one line naming ``--shard``."""
    match = _SHARD.fullmatch(str(text))
    if match is None:
        raise ValueError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/3), got {text!r}")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1:
        raise ValueError(f"--shard: the number of shards must be at least 1, got {text!r}")
    if i >= n:
        hint = " (shards are 0-based: for a Slurm array numbered from 1 use $((SLURM_ARRAY_TASK_ID - 1)))" \
            if i == n else ""
        raise ValueError(f"--shard: the shard index must be in 0..{n - 1}, got {text!r}{hint}")
    return i, n


def shard_of(task_id: str, n: int) -> int:
    """The shard (0..n-1) of ``task_id`` among ``n``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of shards must be a positive integer, not {n!r}")
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def in_shard(task_id: str, i: int, n: int) -> bool:
    """Whether ``task_id`` belongs to shard ``i`` of ``n`` (0-based)."""
    shard = shard_of(task_id, n)
    if not isinstance(i, int) or not 0 <= i < n:
        raise ValueError(f"shard index must be in 0..{n - 1}, not {i!r}")
    return shard == i


def select(tasks, i: int, n: int) -> list:
    """The tasks of shard ``i`` of ``n``, in their given order.

    A task's shard is that of its prompt text (:func:`shard_of`), not of its id: the few tasks
    that share one prompt text (four MBPP texts have two ids each) then run in the same shard
    in the same order as in one unsharded run, and a merged result keeps the same record for
    that text (a result keeps the first record of each prompt text) as the unsharded one.
    """
    if not isinstance(i, int) or not 0 <= i < n:
        raise ValueError(f"shard index must be in 0..{n - 1}, not {i!r}")
    return [t for t in tasks if shard_of(t.prompt, n) == i]
