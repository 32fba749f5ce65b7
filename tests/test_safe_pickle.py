import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from common import safe_pickle

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_plain_data_and_numpy_scalars_load(tmp_path):
    data = {"prompt": [("tok", np.float32(0.5)), ("x", 1.0)], "n": {1, 2}, "t": (1, None)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data))
    assert safe_pickle.load(path) == data


def test_a_pickle_carrying_code_is_refused_with_the_file_name(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(safe_pickle.UnsafePickle, match=r"evil\.pkl.*(posix|os)\.system"):
        safe_pickle.load(path)


def test_arbitrary_classes_are_refused(tmp_path):
    path = tmp_path / "cls.pkl"
    path.write_bytes(pickle.dumps(Path("/etc")))
    with pytest.raises(safe_pickle.UnsafePickle, match="cls.pkl"):
        safe_pickle.load(path)


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "torn.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]})[:-3])
    with pytest.raises(pickle.UnpicklingError, match="torn.pkl"):
        safe_pickle.load(path)


def test_every_published_pickle_loads_safely(mirror):
    files = sorted((mirror / "upstream").rglob("*.pkl"))
    assert len(files) == 65  # 62 attention files, 2 under gradient_based, 1 of GPT-4 answers
    for f in files:
        assert isinstance(safe_pickle.load(f), dict)


def test_no_module_calls_plain_pickle_load():
    pattern = re.compile(r"\bpickle\.(load|loads|Unpickler)\b|\bjoblib\.load\b|torch\.load\(")
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part in {".venv", "tests", ".git"} for part in path.parts):
            continue
        if path.name == "safe_pickle.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
