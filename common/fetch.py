"""Fetch the published artifact and MBPP, verified by SHA-256, written atomically.

Sources (pinned commits, see ``../shared/docs/study.md`` section 1):

* ``upstream/<path>``: the study's artifact repository at commit ``UPSTREAM_COMMIT``;
* ``mbpp/mbpp.jsonl``: google-research at commit ``MBPP_COMMIT``.

Every file is listed with its SHA-256 in ``dataset/MANIFEST.sha256``. With the environment
variable ``DATA_MIRROR=<dir>`` files are copied from ``<dir>/upstream/<path>`` and
``<dir>/mbpp/mbpp.jsonl`` instead of downloaded; the checksums are the same. Files already
present with the right checksum are skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .atomic import atomic_path

UPSTREAM_REPO = "BonanKou/Attention-Alignment-Empirical-Study"
UPSTREAM_COMMIT = "4ee6a76d1ab9efd6870268ae5b8bc0db87fea37e"
MBPP_REPO = "google-research/google-research"
MBPP_COMMIT = "30adf0ec5f35f9609c2f1d896005e184195d9146"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
MANIFEST = paths.ROOT / "dataset" / "MANIFEST.sha256"
MIRROR_ENV = "DATA_MIRROR"


class DataUnavailable(RuntimeError):
    """A data file could be neither downloaded nor copied from a mirror."""


class ChecksumMismatch(RuntimeError):
    """A fetched file does not have the SHA-256 the manifest pins."""


@dataclass(frozen=True)
class DataFile:
    """One pinned file: its manifest name (``upstream/...`` or ``mbpp/...``) and checksum."""

    name: str
    sha256: str

    @property
    def url(self) -> str:
        source, _, path = self.name.partition("/")
        if source == "upstream":
            return RAW_URL.format(repo=UPSTREAM_REPO, commit=UPSTREAM_COMMIT, path=path)
        return RAW_URL.format(repo=MBPP_REPO, commit=MBPP_COMMIT, path=self.name)

    @property
    def local_path(self) -> Path:
        source, _, path = self.name.partition("/")
        if source == "upstream" and path.startswith("experiment_result/"):
            return paths.PUBLISHED_RESULT_DIR / Path(path).name
        return paths.DATASET_DIR / self.name


def read_manifest(manifest: Path = MANIFEST) -> dict[str, DataFile]:
    files = {}
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ValueError(f"{manifest}:{lineno}: expected '<sha256>  <name>', got {line!r}")
        files[name.strip()] = DataFile(name.strip(), digest)
    return files


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_from_mirror(file: DataFile, mirror: Path, tmp: Path) -> None:
    source = mirror / file.name
    if not source.is_file():
        raise DataUnavailable(
            f"{file.name}: not found in the mirror {mirror} (expected {source}). "
            f"{MIRROR_ENV} must point at a folder holding upstream/<path> and mbpp/mbpp.jsonl."
        )
    shutil.copyfile(source, tmp)


def _download(file: DataFile, tmp: Path, timeout: float = 60.0) -> None:
    try:
        with urllib.request.urlopen(file.url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataUnavailable(
            f"could not download {file.name} from {file.url} ({exc}). With no network, set "
            f"{MIRROR_ENV}=<dir> to a local copy laid out as <dir>/upstream/<path> and "
            f"<dir>/mbpp/mbpp.jsonl (in this project's checkout: DATA_MIRROR=../shared)."
        ) from exc


def fetch_file(file: DataFile, mirror: str | os.PathLike | None = None) -> Path:
    """Make ``file.local_path`` hold the verified file and return that path."""
    target = file.local_path
    if target.is_file() and sha256_of(target) == file.sha256:
        return target
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    with atomic_path(target) as tmp:
        if mirror:
            _copy_from_mirror(file, Path(mirror), tmp)
        else:
            _download(file, tmp)
        got = sha256_of(tmp)
        if got != file.sha256:
            raise ChecksumMismatch(
                f"{file.name}: SHA-256 {got} does not match the pinned {file.sha256} "
                f"(source: {Path(mirror) / file.name if mirror else file.url}); nothing was written."
            )
    return target


def fetch(names: list[str] | None = None, mirror: str | os.PathLike | None = None,
          progress: bool = True) -> dict[str, Path]:
    """Fetch the named manifest entries (default: all) and return name -> local path."""
    manifest = read_manifest()
    unknown = sorted(set(names or ()) - set(manifest))
    if unknown:
        raise KeyError(f"not in {MANIFEST}: {', '.join(unknown)}")
    selected = [manifest[n] for n in (names or manifest)]
    out = {}
    for i, file in enumerate(selected, 1):
        out[file.name] = fetch_file(file, mirror)
        if progress and sys.stderr.isatty():
            print(f"\rfetch {i}/{len(selected)}", end="", file=sys.stderr)
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    return out


def path_of(name: str, mirror: str | os.PathLike | None = None) -> Path:
    """Local path of one manifest entry, fetching it first if needed."""
    return fetch([name], mirror, progress=False)[name]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", help=f"local mirror folder (default: ${MIRROR_ENV} or download)")
    args = parser.parse_args(argv)
    try:
        got = fetch(mirror=args.mirror)
    except (DataUnavailable, ChecksumMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(got)} files verified under {paths.DATASET_DIR} and {paths.PUBLISHED_RESULT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
