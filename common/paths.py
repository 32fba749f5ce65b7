"""Where things live in a checkout. Every path can be redirected for tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Published upstream files and MBPP are fetched below this folder (git-ignored data).
DATASET_DIR = Path(os.environ.get("ATTN_DATASET_DIR", ROOT / "dataset"))
#: Attention results: published pickles in ``published/``, our own runs as JSON beside them.
RESULT_DIR = Path(os.environ.get("ATTN_RESULT_DIR", ROOT / "experiment_result"))
PUBLISHED_RESULT_DIR = RESULT_DIR / "published"
ANALYSIS_OUTPUT_DIR = Path(os.environ.get("ATTN_ANALYSIS_OUTPUT", ROOT / "analysis" / "output"))
OTHER_DATA_DIR = ROOT / "other_data"
#: Tables and figures that include the user's own runs (git-ignored; the committed
#: ``analysis/output`` is built from the published results only).
USER_OUTPUT_DIR = Path(os.environ.get("ATTN_USER_OUTPUT", ROOT / "build" / "output"))


def shown(path: str | os.PathLike) -> str:
    """A path as printed to users: relative to the checkout (or the working folder) when it
    lies below it, so outputs carry no machine-specific prefixes."""
    resolved = Path(path).resolve()
    for base in (ROOT, Path.cwd()):
        try:
            return str(resolved.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)
