"""Shared fixtures. Tests read published data through the local mirror (``DATA_MIRROR``),
by default the read-only ``../shared`` beside the checkout, and write fetched copies into a
per-session temporary data folder so that they never depend on what a developer fetched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MIRROR = ROOT.parent / "shared"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and on a shared machine busy threads spin
# against each other (a 2-core box ran ~10x slower with 2 threads than with 1).
torch.set_num_threads(1)
if "DATA_MIRROR" not in os.environ and DEFAULT_MIRROR.is_dir():
    os.environ["DATA_MIRROR"] = str(DEFAULT_MIRROR)


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = os.environ.get("DATA_MIRROR")
    if not path or not Path(path, "upstream").is_dir():
        pytest.fail("the tests need the published data: set DATA_MIRROR to a folder holding "
                    "upstream/ and mbpp/ (in this project: DATA_MIRROR=../shared)")
    return Path(path)


@pytest.fixture(scope="session")
def published(mirror):
    """The published-label dataset (fetched from the mirror once per session)."""
    from common import dataset
    return dataset.load("published", mirror)


@pytest.fixture(scope="session")
def corrected(mirror):
    from common import dataset
    return dataset.load("corrected", mirror)


@pytest.fixture
def server():
    """A local OpenAI-compatible stub server (``tests.openai_stub_server``), closed after the test."""
    from tests.openai_stub_server import StubServer
    with StubServer(lifetime_s=60, slow_s=1.0) as s:
        yield s
