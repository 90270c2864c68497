"""Tests for the built-in datasets: checksum-verified download from a local server and the offline cache."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from fedrec.shared.data.datasets import REGISTRY, DatasetSpec, default_data_dir, fetch
from fedrec.shared.errors import DataError, DownloadError

MOVIELENS_DIR = Path(__file__).resolve().parents[2] / "shared/data/movielens"

RATINGS = b"1\t10\t5\n1\t11\t3\n2\t10\t4\n"
ITEMS = b"10|Toy Story (1995)\n11|Heat (1995)\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class FileServer:
    """A real HTTP server on 127.0.0.1 that serves in-memory files and counts requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncated: set[str] = set()  # paths whose Content-Length promises more than is sent
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                extra = 1000 if self.path in server.truncated else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval keeps shutdown (once per test) fast.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.running = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = FileServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def toy_archive(server: FileServer) -> bytes:
    archive = build_zip({"toy/ratings.tsv": RATINGS, "toy/items.txt": ITEMS, "toy/unused.txt": b"not kept\n"})
    server.files["/toy.zip"] = archive
    return archive


@pytest.fixture
def toy_spec(server: FileServer, toy_archive: bytes) -> DatasetSpec:
    return DatasetSpec(
        name="toy",
        url=server.url("/toy.zip"),
        archive_sha256=sha256(toy_archive),
        members={"ratings.tsv": sha256(RATINGS), "items.txt": sha256(ITEMS)},
        archive_prefix="toy/",
        ratings_file="ratings.tsv",
        sep="\t",
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to go online fail loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetch went online although every file was present")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def closed_port_url(path: str = "/data.zip") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_first_fetch_downloads_verifies_and_writes_members(tmp_path, server, toy_spec):
    messages: list[str] = []
    path = fetch(toy_spec, tmp_path, log=messages.append, timeout=5)

    assert path == tmp_path / "toy" / "ratings.tsv"
    assert path.read_bytes() == RATINGS
    assert (tmp_path / "toy" / "items.txt").read_bytes() == ITEMS
    # Only the pinned members are kept: no archive, no temp files, no unpinned member.
    assert all_files(tmp_path) == ["toy", "toy/items.txt", "toy/ratings.tsv"]
    assert server.requests == ["/toy.zip"]
    assert any("downloading toy" in m for m in messages)


def test_second_fetch_stays_offline(tmp_path, server, toy_spec, monkeypatch):
    first = fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    server.stop()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("went online"))

    assert fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5) == first
    assert server.requests == ["/toy.zip"]


def test_creates_missing_data_dir(tmp_path, toy_spec):
    data_dir = tmp_path / "a" / "b"
    assert fetch(toy_spec, data_dir, log=lambda m: None, timeout=5).read_bytes() == RATINGS


def test_downloads_only_missing_members(tmp_path, server, toy_spec):
    fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    (tmp_path / "toy" / "items.txt").unlink()
    before = (tmp_path / "toy" / "ratings.tsv").stat().st_mtime_ns

    fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    assert (tmp_path / "toy" / "items.txt").read_bytes() == ITEMS
    assert (tmp_path / "toy" / "ratings.tsv").stat().st_mtime_ns == before
    assert len(server.requests) == 2


def test_archive_checksum_mismatch_leaves_nothing(tmp_path, toy_spec, toy_archive):
    spec = dataclasses.replace(toy_spec, archive_sha256="0" * 64)
    with pytest.raises(DownloadError) as excinfo:
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)

    message = str(excinfo.value)
    assert spec.url in message and "0" * 64 in message and sha256(toy_archive) in message
    assert all_files(tmp_path) == []


def test_member_checksum_mismatch_leaves_nothing(tmp_path, toy_spec):
    bad = dict(toy_spec.members, **{"items.txt": "f" * 64})
    spec = dataclasses.replace(toy_spec, archive_sha256=None, members=bad)
    with pytest.raises(DownloadError) as excinfo:
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)

    message = str(excinfo.value)
    assert "toy/items.txt" in message and "f" * 64 in message and sha256(ITEMS) in message
    # ratings.tsv verified fine, but nothing is installed unless every missing member verifies.
    assert all_files(tmp_path) == []


def test_member_missing_from_archive(tmp_path, toy_spec):
    spec = dataclasses.replace(toy_spec, members=dict(toy_spec.members, **{"absent.txt": "a" * 64}))
    with pytest.raises(DownloadError, match="no member 'toy/absent.txt'"):
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)
    assert all_files(tmp_path) == []


def test_corrupted_extracted_file_raises_data_error(tmp_path, server, toy_spec):
    path = fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    path.write_bytes(b"1\t10\t1\n")

    with pytest.raises(DataError) as excinfo:
        fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    message = str(excinfo.value)
    assert str(path) in message and sha256(RATINGS) in message and sha256(b"1\t10\t1\n") in message
    assert "Delete it" in message
    assert server.requests == ["/toy.zip"]  # a corrupt file is reported, not silently re-downloaded


def test_unreachable_url_raises_download_error(tmp_path, toy_spec):
    spec = dataclasses.replace(toy_spec, url=closed_port_url())
    data_dir = tmp_path / "cache"
    with pytest.raises(DownloadError) as excinfo:
        fetch(spec, data_dir, log=lambda m: None, timeout=5)
    assert spec.url in str(excinfo.value)
    assert not data_dir.exists()


def test_http_error_raises_download_error(tmp_path, server, toy_spec):
    spec = dataclasses.replace(toy_spec, url=server.url("/missing.zip"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)
    assert all_files(tmp_path) == []


def test_interrupted_download_leaves_nothing(tmp_path, server, toy_spec):
    server.truncated.add("/toy.zip")
    with pytest.raises(DownloadError, match="interrupted|truncated"):
        fetch(toy_spec, tmp_path, log=lambda m: None, timeout=5)
    assert all_files(tmp_path) == []


def test_not_a_zip_raises_download_error(tmp_path, server, toy_spec):
    server.files["/junk.zip"] = b"<html>not a zip</html>"
    spec = dataclasses.replace(toy_spec, url=server.url("/junk.zip"), archive_sha256=None)
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)
    assert all_files(tmp_path) == []


def test_unknown_name_lists_known_datasets(tmp_path):
    with pytest.raises(DataError) as excinfo:
        fetch("ml-10m", tmp_path)
    message = str(excinfo.value)
    assert "ml-10m" in message
    assert all(name in message for name in REGISTRY)


def test_spec_rejects_member_paths_outside_the_folder():
    with pytest.raises(DataError, match="must be relative"):
        DatasetSpec("x", "http://x/x.zip", None, {"../evil": "0" * 64, "r": "0" * 64}, "x/", "r", ",")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDREC_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FEDREC_DATA_DIR")
    assert default_data_dir() == tmp_path / "xdg" / "fedrec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "fedrec"


def test_registry_matches_reading_conventions():
    assert {name: (s.ratings_file, s.sep, s.has_header, s.rating_min) for name, s in REGISTRY.items()} == {
        "ml-100k": ("u.data", "\t", False, 1.0),
        "ml-1m": ("ratings.dat", "::", False, 1.0),
        "ml-latest-small": ("ratings.csv", ",", True, 0.5),
    }
    assert all(s.url.startswith("https://files.grouplens.org/") for s in REGISTRY.values())
    assert all(s.archive_prefix == f"{name}/" for name, s in REGISTRY.items())


@pytest.mark.movielens
@pytest.mark.skipif(not MOVIELENS_DIR.is_dir(), reason=f"MovieLens files not found at {MOVIELENS_DIR}")
@pytest.mark.parametrize(("name", "ratings_file"), [("ml-100k", "u.data"), ("ml-latest-small", "ratings.csv")])
def test_real_movielens_files_verify_offline(name, ratings_file, offline):
    assert fetch(name, MOVIELENS_DIR, log=lambda m: None) == MOVIELENS_DIR / name / ratings_file


@pytest.mark.movielens
@pytest.mark.skipif(not MOVIELENS_DIR.is_dir(), reason=f"MovieLens files not found at {MOVIELENS_DIR}")
def test_real_ml_1m_without_network_fails_clearly(tmp_path):
    # ml-1m's ratings.dat is not in the shared folder: a fetch must try to download and fail fast.
    assert not (MOVIELENS_DIR / "ml-1m" / "ratings.dat").exists()
    spec = dataclasses.replace(REGISTRY["ml-1m"], url=closed_port_url("/ml-1m.zip"))
    with pytest.raises(DownloadError, match="download failed"):
        fetch(spec, tmp_path, log=lambda m: None, timeout=5)
    assert all_files(tmp_path) == []


def test_present_files_are_verified_before_any_download(tmp_path, offline):
    # ml-1m with a corrupt users.dat and no ratings.dat: the corrupt file is reported and nothing goes online.
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "users.dat").write_bytes(b"corrupt\n")
    with pytest.raises(DataError, match="users.dat"):
        fetch("ml-1m", tmp_path, log=lambda m: None)
