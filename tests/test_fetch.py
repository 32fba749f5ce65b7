import functools
import hashlib
import http.server
import os
import threading
import urllib.error
from pathlib import Path

import pytest

from common import fetch, paths

NAME = "upstream/dataset/humaneval.csv"


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "DATASET_DIR", tmp_path / "dataset")
    monkeypatch.setattr(paths, "PUBLISHED_RESULT_DIR", tmp_path / "experiment_result" / "published")
    monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
    return tmp_path


def test_manifest_pins_every_file_of_the_mirror(mirror):
    manifest = fetch.read_manifest()
    assert len(manifest) == 68
    for name, f in manifest.items():
        assert hashlib.sha256((mirror / name).read_bytes()).hexdigest() == f.sha256, name


def test_mirror_copy_is_verified_and_placed(data_dirs, mirror):
    got = fetch.fetch([NAME, "upstream/experiment_result/coding_all_gptj.pkl", "mbpp/mbpp.jsonl"],
                      mirror=mirror)
    assert got[NAME] == data_dirs / "dataset" / NAME
    assert got["upstream/experiment_result/coding_all_gptj.pkl"] == (
        data_dirs / "experiment_result" / "published" / "coding_all_gptj.pkl")
    assert got["mbpp/mbpp.jsonl"].read_bytes() == (mirror / "mbpp/mbpp.jsonl").read_bytes()


def test_valid_files_are_not_fetched_again(data_dirs, mirror):
    path = fetch.path_of(NAME, mirror)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert fetch.path_of(NAME, data_dirs / "no-such-mirror") == path  # the mirror is not read
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_checksum_mismatch_writes_nothing(data_dirs, mirror, tmp_path):
    bad = tmp_path / "bad"
    (bad / "upstream" / "dataset").mkdir(parents=True)
    (bad / NAME).write_text("prompt_id,prompt\n0,tampered\n")
    with pytest.raises(fetch.ChecksumMismatch, match="humaneval.csv: SHA-256"):
        fetch.fetch([NAME], mirror=bad)
    folder = data_dirs / "dataset" / "upstream" / "dataset"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_missing_file_in_mirror_is_named(data_dirs, tmp_path):
    with pytest.raises(fetch.DataUnavailable, match="humaneval.csv: not found in the mirror"):
        fetch.fetch([NAME], mirror=tmp_path / "empty")


def test_no_network_and_no_mirror_says_what_to_do(data_dirs, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(fetch.urllib.request, "urlopen", offline)
    with pytest.raises(fetch.DataUnavailable, match="set DATA_MIRROR=<dir>"):
        fetch.fetch([NAME])


def test_environment_variable_selects_the_mirror(data_dirs, mirror, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR_ENV, str(mirror))
    assert fetch.path_of(NAME).read_bytes() == (mirror / NAME).read_bytes()


class _RawHandler(http.server.SimpleHTTPRequestHandler):
    """Serves <mirror> the way raw URLs address it: /<owner>/<repo>/<commit>/<path>."""

    def translate_path(self, path):
        parts = path.lstrip("/").split("/", 3)
        repo, rest = "/".join(parts[:2]), parts[3]
        root = Path(self.directory)
        if repo == fetch.UPSTREAM_REPO and parts[2] == fetch.UPSTREAM_COMMIT:
            return str(root / "upstream" / rest)
        if repo == fetch.MBPP_REPO and parts[2] == fetch.MBPP_COMMIT:
            return str(root / rest)
        return str(root / "nowhere")

    def log_message(self, *args):
        pass


def test_download_path_through_a_local_server(data_dirs, mirror, monkeypatch):
    handler = functools.partial(_RawHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(fetch, "RAW_URL",
                            f"http://127.0.0.1:{server.server_port}/{{repo}}/{{commit}}/{{path}}")
        got = fetch.fetch([NAME, "mbpp/mbpp.jsonl"])
        assert got[NAME].read_bytes() == (mirror / NAME).read_bytes()
        assert os.path.getsize(got["mbpp/mbpp.jsonl"]) == 563743
    finally:
        server.shutdown()
        server.server_close()


def test_real_urls_point_at_the_pinned_commits():
    f = fetch.read_manifest()["upstream/gradient_based/dataset.pkl"]
    assert f.url == ("https://raw.githubusercontent.com/BonanKou/Attention-Alignment-Empirical-Study/"
                     "4ee6a76d1ab9efd6870268ae5b8bc0db87fea37e/gradient_based/dataset.pkl")
    m = fetch.read_manifest()["mbpp/mbpp.jsonl"]
    assert m.url.endswith("30adf0ec5f35f9609c2f1d896005e184195d9146/mbpp/mbpp.jsonl")
