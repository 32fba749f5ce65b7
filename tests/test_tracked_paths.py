"""No tracked file carries a path of the machine it was made on (the checkout, its parent, the
virtual environment): committed notebooks and outputs must read the same everywhere."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("git ls-files failed: the path test needs a git checkout")
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def _needles() -> list[str]:
    found = {str(ROOT), str(ROOT.resolve()), str(ROOT.parent) + "/", str(ROOT.resolve().parent) + "/",
             sys.prefix, sys.executable}
    # a path of one or two characters ("/", "/w") would match everywhere: not a machine path
    return sorted(n for n in found if len(n.rstrip("/")) > 4)


def test_no_tracked_file_contains_a_machine_path():
    needles = [n.encode() for n in _needles()]
    offenders = []
    for path in _tracked():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8000]:  # binary (PNG): no text paths to leak
            continue
        for n in needles:
            if n in data:
                line = data[:data.index(n)].count(b"\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {n.decode()}")
    assert not offenders, "machine paths in tracked files:\n" + "\n".join(offenders)


def test_the_check_finds_a_planted_path(tmp_path):
    """The needles are real: the checkout's own path written into a file is found."""
    planted = tmp_path / "x.txt"
    planted.write_text(f"error in {ROOT / 'common' / 'x.py'}\n")
    assert any(n.encode() in planted.read_bytes() for n in _needles())
