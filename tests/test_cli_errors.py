"""Fail loudly, lose nothing (issue 11) through the public entry points: every option is checked
before any work, with one line naming it, exit code 2, no traceback, and existing files left
byte-identical; the project's own error types are one line with exit code 1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attention_alignment import runner
from common.method import Attribution
from common.results import AttributionResult

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def existing(tmp_path):
    """A result folder with one finished file in it."""
    out = tmp_path / "res"
    r = AttributionResult.open(out / "saliency_coding_smollm2.jsonl", "saliency_coding", "smollm2")
    r.append("mbpp/601", "Write a function.", Attribution([(0, 5)], [1.0], "pass"))
    return out


@pytest.mark.parametrize("argv, message", [
    (["--limit", "-1"], "--limit: must be 0 (all) or a positive integer, not -1"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer, not 0"),
    (["--threads", "0"], "--threads: must be a positive integer, not 0"),
    (["--device", "banana"], "--device: device 'banana' is not a torch device"),
    (["--max-cost-usd", "5"], "--max-cost-usd / --price-per-1k apply to API backends"),
    (["--model", "some-chat-model", "--backend", "chat", "--base-url", "http://127.0.0.1:9/v1",
      "--max-cost-usd", "5", "--family", "perturbation"], "--max-cost-usd: no price known for model"),
    (["--methods", "nope"], "--methods: unknown method 'nope'"),
    (["--methods", "saliency_coding", "--seed", "3"], "--seed applies to none of the selected methods"),
    (["--temperature", "warm"], "--temperature must be a number or 'default'"),
])
def test_bad_options_one_line_exit_2_nothing_written(argv, message, existing, capsys):
    before = snapshot(existing)
    try:
        code = runner.main(argv + ["--output", str(existing), "--no-progress"])
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error") or "error:" in ln][-1].count("\n") == 0
    assert snapshot(existing) == before


def test_a_cuda_device_on_a_machine_without_one_is_a_usage_error(existing, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runner.main(["--device", "cuda", "--output", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "--device: device 'cuda' requested but torch sees no CUDA GPU" in err and "Traceback" not in err


def test_a_malformed_result_file_is_one_line_naming_it(existing, capsys, mirror):
    bad = existing / "saliency_coding_tiny-gpt2.jsonl"
    bad.write_text('{"format": "attention-alignment/1", "method": "saliency_coding", "model": "tiny-gpt2"}\n'
                   'not json\n')
    before = snapshot(existing)
    code = runner.main(["--model", "tiny-gpt2", "--methods", "saliency_coding", "--limit", "1",
                        "--benchmark", "mbpp", "--output", str(existing), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == f"error: {bad}, line 2: not JSON"
    assert snapshot(existing) == before


def test_missing_data_is_one_line_exit_1(tmp_path):
    """A run with neither the data nor a mirror to fetch it from (a fresh process: the data
    folder is read at import)."""
    env = {**os.environ, "ATTN_DATASET_DIR": str(tmp_path / "data"), "DATA_MIRROR": str(tmp_path / "empty"),
           "HF_HUB_OFFLINE": "1"}
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "attention_alignment", "--model", "tiny-gpt2",
                           "--limit", "1", "--output", str(tmp_path / "out"), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["attention", "perturbation"])
def test_make_targets_refuse_a_negative_limit(target, existing):
    before = snapshot(existing)
    proc = subprocess.run(["make", "-s", "-o", "setup", target, "LIMIT=-1", f"OUTPUT={existing}",
                           f"VENV={sys.prefix}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--limit: must be 0 (all) or a positive integer, not -1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(existing) == before
