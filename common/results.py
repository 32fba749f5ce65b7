"""Attribution results: one object per (method, model), loaded from published pickles or from
our own JSON-lines files and appended resumably (:class:`AttributionResult`).

A result maps each prompt text to its scored units: half-open character spans in the prompt
(prompt order) and one score per unit. Published pickles carry unit *texts*; they are located
in the prompt with :func:`common.align.locate` on load.

File format of our own runs (``experiment_result/<method>_<model>.jsonl``)::

    {"format": "attention-alignment/1", "method": ..., "model": ..., "meta": {...}}
    {"task_id": ..., "prompt": ..., "spans": [[a, b], ...], "scores": [...], "generation": ...,
     "details": {...}}
    {"task_id": ..., "prompt": ..., "failure": "reason", "generation": ...}

One line per task, appended and flushed as each task finishes, so a killed run loses at most
the task in progress; a torn last line is dropped when the file is next opened.

Shards (``--shard I/N``) write ``<method>_<model>.shard-<I>-of-<N>.jsonl``, each with its own
header (``meta["shard"]``: index, count, tasks planned), so concurrent shards never write the
same file. Everything that reads results goes through :func:`discover` and
:meth:`AttributionResult.load`, which see one logical result ``<method>_<model>.jsonl`` per set
of shards and merge them; a set with a shard missing or unfinished loads with a
:class:`PartialResultWarning` and ``result.shards.partial``.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import align, safe_pickle
from .atomic import atomic_path

FORMAT = "attention-alignment/1"

SELF_ATTENTION_METHODS = ("reading_first", "reading_last", "reading_all",
                          "coding_first", "coding_last", "coding_all")
GRADIENT_METHODS = ("saliency_reading", "saliency_coding",
                    "inputxgradient_reading", "inputxgradient_coding")
PERTURBATION_METHODS = ("bert_perturbation", "shap_perturbation")
#: The twelve methods in the order of the paper's Table 3.
PAPER_METHODS = (PERTURBATION_METHODS + ("inputxgradient_reading", "inputxgradient_coding",
                 "saliency_reading", "saliency_coding") + SELF_ATTENTION_METHODS)
PAPER_MODELS = ("incoder", "codegen", "codeparrot", "gptj", "polycoder")


class ResultFileError(ValueError):
    """A result file is malformed; the message names the file and the entry."""


class ResultWarning(UserWarning):
    """Something in a result file is lost or partial (a torn last line); scoring goes on."""


class PartialResultWarning(UserWarning):
    """A sharded result was loaded with shards missing or unfinished."""


@dataclass(frozen=True)
class ShardSet:
    """Which shards of ``count`` a loaded result holds; ``unfinished`` maps a shard index to
    (tasks recorded, tasks planned) for a shard file that is not finished."""

    count: int
    present: tuple[int, ...]
    unfinished: dict = field(default_factory=dict)

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.count) if i not in self.present)

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.unfinished)

    def __str__(self) -> str:
        parts = [f"{len(self.present)} of {self.count} shards"]
        if self.missing:
            parts.append(f"missing {', '.join(map(str, self.missing))}")
        for i, (done, planned) in sorted(self.unfinished.items()):
            parts.append(f"shard {i} has {done} of {planned} tasks")
        return "; ".join(parts)


@dataclass
class PromptScores:
    """Scored units of one prompt: ``spans`` ``(n, 2)`` int64, ``scores`` ``(n,)`` float64."""

    spans: np.ndarray
    scores: np.ndarray
    task_id: str | None = None

    def texts(self, prompt: str) -> list[str]:
        return [prompt[a:b] for a, b in self.spans]

    def top_k(self, k: int) -> np.ndarray:
        """Indices of the k highest scores; ties keep prompt order (a stable sort)."""
        return np.argsort(-self.scores, kind="stable")[:k]


@dataclass
class AttributionResult:
    """The attributions of one method for one model over many tasks.

    Loaded from our JSON-lines files or the study's published pickles (:meth:`load`), extended
    one task at a time (:meth:`open` + :meth:`append`, resumable), scored against the human
    labels (:meth:`score`), shown task by task (:meth:`show`) and flattened (:meth:`to_frame`).
    ``prompts`` maps each prompt text to its scored words; ``failures``, ``generations`` and
    ``details`` are keyed by task id.
    """

    method: str
    model: str
    prompts: dict[str, PromptScores]
    source: str = "computed"
    failures: dict[str, str] = field(default_factory=dict)
    generations: dict[str, str] = field(default_factory=dict)
    details: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    #: the shards merged into this result (None: an unsharded file or a published pickle)
    shards: ShardSet | None = None
    #: every task id with a record (a task whose prompt text an earlier task has is in no
    #: ``prompts`` entry of its own, but is recorded)
    recorded: set[str] = field(default_factory=set, repr=False)
    _writer: ResultWriter | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.method}_{self.model}"

    @property
    def task_ids(self) -> list[str]:
        """Scored tasks, in file order (published files carry no task ids: empty)."""
        return [ps.task_id for ps in self.prompts.values() if ps.task_id is not None]

    @property
    def done(self) -> set[str]:
        """Task ids already recorded, scored or failed (a rerun skips them)."""
        return set(self.task_ids) | set(self.failures) | self.recorded

    def __len__(self) -> int:
        return len(self.prompts)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, spaceless: bool = False) -> AttributionResult:
        """A result file: ours (``.jsonl``) or a published pickle (``.pkl``).

        ``<method>_<model>.jsonl`` with shard files beside it (``<method>_<model>.shard-I-of-N
        .jsonl``) is the merge of the shards (shard 0 first); a set with shards missing or
        unfinished loads what is there and warns (:class:`PartialResultWarning`). A shard file
        named directly loads that shard alone."""
        path = Path(path)
        if path.suffix == ".pkl":
            return cls.from_published(path, spaceless)
        parts = [] if _SHARD_FILE.match(path.name) else shard_files(path)
        if parts:
            return cls._load_shards(path, parts)
        header, records, text = _read_jsonl(path)
        torn = torn_line(text)
        if torn is not None:
            line, task = torn
            warnings.warn(ResultWarning(
                f"{path}, line {line}: torn last line ignored (task {task or 'unknown'} is lost; a rerun "
                f"of the same command recomputes it)"), stacklevel=2)
        meta = header.get("meta", {}) if isinstance(header.get("meta"), dict) else {}
        result = cls(header["method"], header["model"], {}, source="computed", meta=meta, path=path)
        for n, rec in records:
            result._add_record(rec, f"{path}, line {n}")
        shard = meta.get("shard")
        if isinstance(shard, dict) and _SHARD_FILE.match(path.name):
            result.shards = ShardSet(int(shard["count"]), (int(shard["index"]),),
                                     _unfinished(shard, len(result.done)))
        return result

    @classmethod
    def _load_shards(cls, path: Path, parts: list[tuple[int, int, Path]]) -> AttributionResult:
        """The shards of ``path`` merged into one result (records of shard 0, then 1, ...)."""
        if path.exists():
            raise ResultFileError(f"{path} and its shard files {parts[0][2].name}... both exist: "
                                  f"one result would be two; keep one of them")
        counts = sorted({n for _, n, _ in parts})
        if len(counts) > 1:
            raise ResultFileError(f"{path}: shard files of different shard counts "
                                  f"({', '.join(map(str, counts))}) beside each other; keep one set")
        merged: AttributionResult | None = None
        first: Path | None = None
        unfinished = {}
        for _i, _n, part in parts:
            one = cls.load(part)
            if merged is None:
                merged, first = one, part
                merged.meta = {k: v for k, v in one.meta.items() if k != "shard"}
                merged.path = path
            else:
                if (one.method, one.model) != (merged.method, merged.model):
                    raise ResultFileError(f"{part} holds {one.name}, {first} holds {merged.name}")
                for key in ("method", "backend"):
                    if one.meta.get(key) != merged.meta.get(key):
                        raise ResultFileError(f"{part} was made with other {key} settings than {first}: "
                                              f"shards of one result must share them")
                merged._merge(one)
            unfinished.update(one.shards.unfinished if one.shards else {})
        merged.shards = ShardSet(counts[0], tuple(i for i, _, _ in parts), unfinished)
        if merged.shards.partial:
            warnings.warn(f"{path.name}: partial result ({merged.shards})", PartialResultWarning,
                          stacklevel=3)
        return merged

    def _merge(self, other: AttributionResult) -> None:
        """Add another shard's records (a task already present keeps its first record)."""
        done = self.done
        self.recorded |= other.recorded
        for prompt, ps in other.prompts.items():
            if ps.task_id not in done:
                self.prompts.setdefault(prompt, ps)
        for attr in ("failures", "generations", "details"):
            mine = getattr(self, attr)
            for tid, value in getattr(other, attr).items():
                if tid not in done:
                    mine.setdefault(tid, value)

    @classmethod
    def from_published(cls, path: str | os.PathLike, spaceless: bool = False,
                       method: str | None = None, model: str | None = None,
                       cache: bool = True) -> AttributionResult:
        """Load ``{method}_{model}.pkl`` (untrusted) and locate its token texts in each prompt.

        Locating the units is a Python loop over about two million tokens for the 62 published
        files; the located spans are therefore cached beside the pickle
        (``<file>.located[-spaceless].npz``, no pickled objects, keyed by the pickle's size and
        modification time), so later loads skip the loop. ``cache=False`` always locates.
        """
        path = Path(path)
        if method is None or model is None:
            method, _, model = path.stem.rpartition("_")
        flat = located_units(path, spaceless, cache)
        ends = np.cumsum(flat.counts)
        starts = ends - flat.counts
        prompts = {prompt: PromptScores(flat.spans[a:b], flat.scores[a:b])
                   for prompt, a, b in zip(flat.prompts, starts.tolist(), ends.tolist())}
        return cls(method, model, prompts, source="published",
                   meta={"spaceless": spaceless}, path=path)

    def _add_record(self, rec: dict, where: str) -> None:
        tid, prompt = rec.get("task_id"), rec.get("prompt")
        if not isinstance(tid, str) or not isinstance(prompt, str):
            raise ResultFileError(f"{where}: a record needs string 'task_id' and 'prompt'")
        self.recorded.add(tid)
        if isinstance(rec.get("generation"), str):
            self.generations[tid] = rec["generation"]
        if isinstance(rec.get("details"), dict):
            self.details[tid] = rec["details"]
        if "failure" in rec:
            self.failures[tid] = str(rec["failure"])
            return
        try:
            spans = np.asarray(rec["spans"], dtype=np.int64).reshape(-1, 2)
            scores = np.asarray(rec["scores"], dtype=np.float64).reshape(-1)
        except (KeyError, ValueError, TypeError) as exc:
            raise ResultFileError(f"{where}: bad spans or scores ({exc})") from None
        if len(spans) != len(scores) or not np.isfinite(scores).all():
            raise ResultFileError(f"{where}: {len(spans)} spans, {len(scores)} scores, "
                                  f"or a non-finite score")
        if len(spans) and (spans.min() < 0 or spans[:, 1].max() > len(prompt)
                           or (spans[:, 1] < spans[:, 0]).any()):
            raise ResultFileError(f"{where}: a span lies outside the prompt")
        self.prompts.setdefault(prompt, PromptScores(spans, scores, tid))

    # -- appending -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, method: str, model: str, meta: dict | None = None,
             match_meta: tuple[str, ...] = (), update_meta: tuple[str, ...] = ()) -> AttributionResult:
        """The result file at ``path``, created if absent, ready for :meth:`append`.

        An existing file must hold the same method and model and share the ``match_meta``
        settings; a torn last line left by a killed run is cut off.
        """
        writer = ResultWriter(path, method, model, meta, match_meta, update_meta)
        result = cls.load(writer.path)
        result._writer = writer
        return result

    def append(self, task_id: str, prompt: str, attribution=None, failure: str | None = None,
               generation: str | None = None) -> None:
        """Record one task: an attribution (spans, scores, generation, details) or a failure.
        Written to the file when the result was :meth:`open`-ed, else kept in memory."""
        if (attribution is None) == (failure is None):
            raise ValueError("append takes either an attribution or a failure")
        if failure is not None:
            rec = {"task_id": task_id, "prompt": prompt, "failure": failure}
            if generation is not None:
                rec["generation"] = generation
        else:
            rec = _record(task_id, prompt, attribution.spans, attribution.scores,
                          attribution.generation, attribution.details or None)
        self._add_record(rec, f"{self.name}, task {task_id}")
        if self._writer is not None:
            self._writer.append(rec)

    # -- views ---------------------------------------------------------------------------------
    def score(self, labels: str = "corrected", ks=(5, 10, 20), by_benchmark: bool = False,
              mirror=None):
        """F1, precision, recall and Krippendorff's alpha against the human labels, one row per
        k (and benchmark): a pandas DataFrame with the number of tasks scored."""
        import pandas as pd

        from . import dataset, metrics

        ds = dataset.load(labels, mirror)
        index = metrics.LabelIndex({p: list(t.keywords) for p, t in ds.prompts().items()})
        groups = {"all": None}
        if by_benchmark:
            groups = {b: [p for p, t in ds.prompts().items() if t.benchmark == b]
                      for b in dataset.BENCHMARKS}
        rows = []
        for bench, prompts in groups.items():
            scorer = metrics.Scorer(self.prompts, index, prompts)
            for k in ks:
                s = scorer.score(k)
                rows.append({"method": self.method, "model": self.model, "benchmark": bench, "k": k,
                             "precision": s.precision, "recall": s.recall, "f1": s.f1,
                             "alpha": s.alpha, "n_tasks": s.n_prompts})
        frame = pd.DataFrame(rows)
        return frame if by_benchmark else frame.drop(columns="benchmark")

    def to_frame(self):
        """One row per scored word: task_id, start, end, word, score, rank (1 = highest;
        ties in prompt order)."""
        import pandas as pd

        rows = []
        for prompt, ps in self.prompts.items():
            rank = np.empty(len(ps.scores), dtype=np.int64)
            rank[ps.top_k(len(ps.scores))] = np.arange(1, len(ps.scores) + 1)
            for (a, b), score, r in zip(ps.spans.tolist(), ps.scores.tolist(), rank.tolist()):
                rows.append((ps.task_id, a, b, prompt[a:b], score, r))
        return pd.DataFrame(rows, columns=["task_id", "start", "end", "word", "score", "rank"])

    def show(self, task_id: str | None = None, k: int = 10, labels: str = "corrected", mirror=None):
        """One task's words shaded by score, its top-k boxed and the human keywords underlined
        (HTML in a notebook, text elsewhere). Default: the first scored task."""
        from . import dataset, highlight

        scored = {ps.task_id: (p, ps) for p, ps in self.prompts.items()}
        if not scored:
            reasons = "; ".join(f"{t}: {r}" for t, r in list(self.failures.items())[:3])
            return highlight.Message(f"{self.name}: no task scored" + (f" ({reasons})" if reasons else ""))
        if task_id is not None and task_id not in scored:
            why = self.failures.get(task_id)
            return highlight.Message(f"{self.name}: task {task_id} " +
                                     (f"failed: {why}" if why else "is not in this result"))
        tid = task_id if task_id is not None else next(iter(scored))
        prompt, ps = scored[tid]
        task = dataset.load(labels, mirror).prompts().get(prompt)
        keywords = task.keywords if task is not None else ()
        region = task.region if task is not None else None
        title = f"{tid or 'prompt'}, {self.name}"
        return highlight.Highlight(title, prompt, ps, keywords, k, region,
                                   code=self.generations.get(tid, ""))


class LocatedUnits(NamedTuple):
    """A published result's units located in their prompts, concatenated in prompt order:
    ``counts[i]`` rows of ``spans`` / ``scores`` belong to ``prompts[i]``."""

    prompts: list[str]
    counts: np.ndarray  # (prompts,) int64
    spans: np.ndarray  # (units, 2) int64
    scores: np.ndarray  # (units,) float64
    #: each unit's rank inside its prompt (``metrics.Ranked``), when known; checked on use
    rank: np.ndarray | None = None


def located_units(path: str | os.PathLike, spaceless: bool = False, cache: bool = True) -> LocatedUnits:
    """The units of the published pickle ``path`` located in their prompts (see
    :meth:`AttributionResult.from_published`), from the cache beside it when it is current."""
    path = Path(path)
    flat = _read_located(path, spaceless) if cache else None
    if flat is None:
        flat = _flatten(_locate_published(path, spaceless))
        if cache:
            from .metrics import Ranked
            flat = flat._replace(rank=Ranked.from_flat(*flat).rank)
            _write_located(path, spaceless, flat)
    return flat


def _flatten(prompts: dict[str, PromptScores]) -> LocatedUnits:
    parts = list(prompts.values())
    counts = np.asarray([len(p.scores) for p in parts], dtype=np.int64)
    spans = np.concatenate([p.spans for p in parts]) if parts else np.zeros((0, 2), np.int64)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
    return LocatedUnits(list(prompts), counts, spans.astype(np.int64), scores.astype(np.float64))


def _locate_published(path: Path, spaceless: bool) -> dict[str, PromptScores]:
    data = safe_pickle.load(path)
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: expected a dict prompt -> [(token, score), ...]")
    prompts = {}
    for n, (prompt, pairs) in enumerate(data.items(), 1):
        if not isinstance(prompt, str) or not isinstance(pairs, list | tuple):
            raise ResultFileError(f"{path}, entry {n}: expected str -> list of (token, score)")
        try:  # the common case at C speed; any odd unit is named by the loop below
            texts = [t for t, _ in pairs]
            scores = np.fromiter((s for _, s in pairs), dtype=np.float64, count=len(pairs))
            ok = all(isinstance(t, str) for t in texts) and bool(np.isfinite(scores).all())
        except (TypeError, ValueError):
            ok = False
        if not ok:
            for j, pair in enumerate(pairs):
                try:
                    text, score = pair
                    score = float(score)
                except (TypeError, ValueError):
                    raise ResultFileError(f"{path}, entry {n}, unit {j}: {pair!r} is not "
                                          f"(token, score)") from None
                if not isinstance(text, str) or not math.isfinite(score):
                    raise ResultFileError(f"{path}, entry {n}, unit {j}: bad unit {pair!r}")
        found = align.locate(prompt, texts, spaceless=spaceless)
        located = np.asarray(found, dtype=np.int64).reshape(-1, 3)
        prompts[prompt] = PromptScores(located[:, 1:], scores[located[:, 0]])
    return prompts


#: 3: prompts stored as one UTF-8 buffer (a fixed-width unicode array made each file 7 MB),
#: and the units' ranks. 4: one flat file (a JSON header line, then the raw arrays) instead of
#: an npz, whose zip member and npy header per array cost more than reading the bytes
_LOCATED_FORMAT = 4
#: the arrays a located-units file may hold, with their dtypes: nothing else is read from one
_LOCATED_ARRAYS = {"text": "|u1", "text_sizes": "<i8", "counts": "<i8", "spans": "<i8",
                   "scores": "<f8", "rank": "<i8"}
_ALIGN = 64


def _located_path(path: Path, spaceless: bool) -> Path:
    return path.with_name(path.name + (".located-spaceless" if spaceless else ".located"))


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [_LOCATED_FORMAT, st.st_size, st.st_mtime_ns]


def _write_located(path: Path, spaceless: bool, flat: LocatedUnits) -> None:
    """Header line ``{"stamp", "arrays": name -> [offset, shape], "bytes"}`` padded to
    :data:`_ALIGN` bytes, then each array's raw bytes (offsets from the end of the header;
    ``bytes`` of them in all, so a file cut short anywhere is seen)."""
    encoded = [p.encode("utf-8") for p in flat.prompts]
    arrays = {"text": np.frombuffer(b"".join(encoded), dtype=np.uint8),
              "text_sizes": np.asarray([len(e) for e in encoded], dtype=np.int64),
              "counts": flat.counts, "spans": flat.spans, "scores": flat.scores}
    if flat.rank is not None:
        arrays["rank"] = flat.rank
    layout, blobs, at = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, dtype=np.dtype(_LOCATED_ARRAYS[name]))
        layout[name] = [at, list(a.shape)]
        blobs.append(a.tobytes() + b"\0" * (-a.nbytes % _ALIGN))
        at += len(blobs[-1])
    header = json.dumps({"stamp": _stamp(path), "arrays": layout, "bytes": at}).encode()
    header += b" " * (-(len(header) + 1) % _ALIGN) + b"\n"
    cache = _located_path(path, spaceless)
    try:
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            f.write(header)
            f.writelines(blobs)
        # the format-3 cache this one replaces (an npz of about 1 MB per result)
        cache.with_name(cache.name + ".npz").unlink(missing_ok=True)
    except OSError:
        pass  # a read-only data folder: no cache, the next load locates again


def _read_arrays(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays (read-only views of ``data``) of a located-units file; ValueError,
    KeyError or TypeError when it is not one."""
    body = data.index(b"\n") + 1
    header = json.loads(data[:body])
    if body + header["bytes"] != len(data):
        raise ValueError("a located-units file of the wrong size")
    arrays = {}
    for name, (offset, shape) in header["arrays"].items():
        dtype = np.dtype(_LOCATED_ARRAYS[name])
        count = math.prod(shape)
        if offset < 0 or count < 0 or body + offset + count * dtype.itemsize > len(data):
            raise ValueError(f"{name} runs past the end of the file")
        arrays[name] = np.frombuffer(data, dtype, count, body + offset).reshape(shape)
    return header, arrays


#: decoded prompt lists by their UTF-8 buffer and sizes: the published files of one model
#: set share one, decoded (and its lengths taken) once
_PROMPT_LISTS: dict[tuple[bytes, bytes], tuple[list[str], np.ndarray]] = {}


def _prompts_of(text: bytes, sizes: np.ndarray) -> tuple[list[str], np.ndarray]:
    key = (text, sizes.tobytes())
    if key not in _PROMPT_LISTS:
        cuts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        prompts = [text[a:b].decode("utf-8") for a, b in zip(cuts[:-1], cuts[1:])]
        if len(_PROMPT_LISTS) >= 8:
            _PROMPT_LISTS.clear()
        _PROMPT_LISTS[key] = (prompts, np.fromiter(map(len, prompts), dtype=np.int64,
                                                   count=len(prompts)))
    prompts, lengths = _PROMPT_LISTS[key]
    return list(prompts), lengths


def _read_located(path: Path, spaceless: bool) -> LocatedUnits | None:
    """The cached located units, or None when absent, stale or malformed (then recomputed)."""
    cache = _located_path(path, spaceless)
    try:
        data = cache.read_bytes()
    except OSError:
        return None
    try:
        header, z = _read_arrays(data)
        if header["stamp"] != _stamp(path):
            return None
        text, sizes, counts = z["text"].tobytes(), z["text_sizes"], z["counts"]
        spans, scores, rank = z["spans"], z["scores"], z.get("rank")
        if (sizes.ndim != 1 or sizes.sum() != len(text) or (sizes < 0).any()
                or len(sizes) != len(counts)):
            return None
        prompts, lengths = _prompts_of(text, sizes)
        n = int(counts.sum())
        if ((counts < 0).any() or spans.shape != (n, 2) or scores.shape != (n,)
                or not np.isfinite(scores).all()):
            return None
        lengths = np.repeat(lengths, counts)
        if n and ((spans[:, 0] < 0).any() or (spans[:, 1] < spans[:, 0]).any()
                  or (spans[:, 1] > lengths).any()):
            return None
        return LocatedUnits(prompts, counts, spans, scores, rank)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _header(method: str, model: str, meta: dict) -> dict:
    return {"format": FORMAT, "method": method, "model": model, "meta": meta}


def _record(task_id, prompt, spans, scores, generation=None, details=None) -> dict:
    rec = {"task_id": task_id, "prompt": prompt,
           "spans": np.asarray(spans, dtype=np.int64).reshape(-1, 2).tolist(),
           "scores": [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]}
    if generation is not None:
        rec["generation"] = generation
    if details:
        rec["details"] = details
    return rec


def torn_line(text: str) -> tuple[int, str | None] | None:
    """``(line number, task id or None)`` of a torn (unterminated) last line of a result file's
    text, or None."""
    if not text or text.endswith("\n"):
        return None
    found = re.search(r'"task_id":\s*"([^"]*)"', text[text.rfind("\n") + 1:])
    return text.count("\n") + 1, found.group(1) if found else None


def _read_jsonl(path: Path) -> tuple[dict, list[tuple[int, dict]], str]:
    """Header, records and the file's text; a torn (unterminated, unparsable) last line is
    ignored."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # text after the last newline is a torn write
    if not complete:
        raise ResultFileError(f"{path}: empty result file")
    try:
        header = json.loads(complete[0])
    except json.JSONDecodeError:
        raise ResultFileError(f"{path}, line 1: not a JSON header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ResultFileError(f"{path}, line 1: not an {FORMAT} header")
    records = []
    for n, line in enumerate(complete[1:], 2):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ResultFileError(f"{path}, line {n}: not JSON") from None
        if not isinstance(rec, dict):
            raise ResultFileError(f"{path}, line {n}: not a JSON object")
        records.append((n, rec))
    return header, records, text


class ResultWriter:
    """Append task records to a result file as they finish; reopening resumes.

    ``done`` holds the task ids already recorded (scored or failed). A torn last line left by
    a killed run is cut off (atomically) when the writer opens the file. ``match_meta`` names
    the ``meta`` keys (precision, checkpoint, method settings...) that an existing file must
    share: appending results made otherwise would mix them silently. ``update_meta`` names the
    keys rewritten into an existing file's header when they changed (a shard's planned tasks).
    """

    def __init__(self, path: str | os.PathLike, method: str, model: str, meta: dict | None = None,
                 match_meta: tuple[str, ...] = (), update_meta: tuple[str, ...] = ()):
        self.path = Path(path)
        self.done: set[str] = set()
        meta = meta or {}
        if self.path.exists():
            header, records, text = _read_jsonl(self.path)
            if (header["method"], header["model"]) != (method, model):
                raise ResultFileError(f"{self.path} holds {header['method']}_{header['model']}, "
                                      f"not {method}_{model}")
            old = header.get("meta", {}) if isinstance(header.get("meta"), dict) else {}
            for key in match_meta:
                if key in old and old[key] != meta.get(key):
                    raise ResultFileError(
                        f"{self.path} was made with {key}={old[key]!r}, this run has "
                        f"{meta.get(key)!r}: use another result folder or model name, or delete "
                        f"the file")
            self.done = {r.get("task_id") for _, r in records}
            keep = text[: text.rfind("\n") + 1]  # a torn last line is cut off
            if any(old.get(key) != meta.get(key) for key in update_meta):
                # e.g. a shard's planned task count after a rerun with another --limit
                header["meta"] = {**old, **{key: meta.get(key) for key in update_meta}}
                keep = json.dumps(header) + "\n" + keep[keep.find("\n") + 1:]
            if keep != text:
                with atomic_path(self.path) as tmp:
                    tmp.write_text(keep, encoding="utf-8")
        else:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(_header(method, model, meta)) + "\n",
                               encoding="utf-8")

    def append(self, rec: dict) -> None:
        """Append one record (flushed and fsynced: a killed run loses at most this line)."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(rec["task_id"])

    def add(self, task_id: str, prompt: str, spans, scores, generation: str | None = None) -> None:
        self.append(_record(task_id, prompt, spans, scores, generation))

    def fail(self, task_id: str, prompt: str, reason: str, generation: str | None = None) -> None:
        rec = {"task_id": task_id, "prompt": prompt, "failure": reason}
        if generation is not None:
            rec["generation"] = generation
        self.append(rec)


_PUBLISHED_NAME = re.compile(r"^(?P<method>.+)_(?P<model>[^_]+)$")
_SHARD_FILE = re.compile(r"^(?P<base>.+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)\.jsonl$")


def shard_files(path: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """``(index, count, path)`` of the shard files of the logical result ``path``
    (``X.jsonl`` -> ``X.shard-I-of-N.jsonl``), ordered by count and index."""
    path = Path(path)
    base = _SHARD_FILE.match(path.name)
    stem = base["base"] if base else path.name.removesuffix(".jsonl")
    found = []
    for p in path.parent.glob(f"{glob_escape(stem)}.shard-*-of-*.jsonl"):
        m = _SHARD_FILE.match(p.name)
        if m and m["base"] == stem:
            found.append((int(m["index"]), int(m["count"]), p))
    return sorted(found, key=lambda t: (t[1], t[0]))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _unfinished(shard: dict, done: int) -> dict:
    planned = shard.get("tasks")
    if isinstance(planned, int) and done < planned:
        return {int(shard["index"]): (done, planned)}
    return {}


def discover(result_dir: str | os.PathLike, published_dir: str | os.PathLike | None = None,
             ) -> list[tuple[str, str, str, Path]]:
    """``(source, method, model, path)`` of every result: published pickles in
    ``published_dir`` (default ``<result_dir>/published``) and our JSON-lines files. A set of
    shard files is one result, ``path`` its logical name ``<method>_<model>.jsonl`` (which
    :meth:`AttributionResult.load` merges)."""
    result_dir = Path(result_dir)
    published_dir = Path(published_dir) if published_dir else result_dir / "published"
    found = []
    for p in sorted(published_dir.glob("*.pkl")):
        m = _PUBLISHED_NAME.match(p.stem)
        if m:
            found.append(("published", m["method"], m["model"], p))
    logical = set()
    for p in sorted(result_dir.glob("*.jsonl")):
        try:
            header = json.loads(p.open(encoding="utf-8").readline())
        except (json.JSONDecodeError, OSError):
            raise ResultFileError(f"{p}, line 1: not a JSON header") from None
        if isinstance(header, dict) and header.get("format") == FORMAT:
            shard = _SHARD_FILE.match(p.name)
            name = p.with_name(f"{shard['base']}.jsonl") if shard else p
            if name not in logical:
                logical.add(name)
                found.append(("computed", header["method"], header["model"], name))
    return found


def model_slug(model: str) -> str:
    """A file-name-safe form of a model id (``org/name`` -> ``org--name``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", model.replace("/", "--")).strip("-")


def result_path(result_dir: str | os.PathLike, method: str, model: str,
                shard: tuple[int, int] | None = None) -> Path:
    """``<dir>/<method>_<model>.jsonl``, or shard ``(I, N)``'s ``...shard-I-of-N.jsonl``."""
    stem = f"{method}_{model_slug(model)}"
    if shard is not None:
        return Path(result_dir) / f"{stem}.shard-{shard[0]}-of-{shard[1]}.jsonl"
    return Path(result_dir) / f"{stem}.jsonl"
