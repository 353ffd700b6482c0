"""Tests of mamlkit.data.download and of Omniglot's download path, against a local HTTP server.

Nothing here touches the network: a server on 127.0.0.1 serves a small zip, in full, cut short
(Content-Length larger than the body) or stalled half-way.
"""

import hashlib
import http.server
import io
import threading
import urllib.error
import zipfile

import pytest

from mamlkit.data import download as download_module
from mamlkit.data import omniglot
from mamlkit.data.download import ChecksumError, download
from mamlkit.errors import DataUnavailableError


def small_zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images_background/readme.txt", text * 2000)
    return buffer.getvalue()


PAYLOAD = small_zip("omniglot ")
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """Serves ``PAYLOAD`` at ``/ok``, half of it at ``/short`` and ``/stall``; 404 elsewhere."""

    def __init__(self):
        self.hits: list[str] = []
        self.release = threading.Event()  # lets a stalled response finish at teardown
        self.files = {"/ok": PAYLOAD, "/short": PAYLOAD, "/stall": PAYLOAD}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path == "/ok" or self.path.endswith(".zip"):
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if self.path == "/stall":
                    server.release.wait(timeout=10)
                # Returning closes the connection with the body incomplete.

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def test_download_with_the_right_md5(server, tmp_path, capsys):
    dest = tmp_path / "sub" / "images_background.zip"
    assert download(f"{server.url}/ok", dest, PAYLOAD_MD5.upper(), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left
    assert str(dest) in capsys.readouterr().out  # says where the file went


def test_wrong_md5_is_rejected_and_nothing_is_left(server, tmp_path):
    dest = tmp_path / "images_background.zip"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as error:
        download(f"{server.url}/ok", dest, wrong, progress=False)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert "images_background.zip" in message and wrong in message and PAYLOAD_MD5 in message
    assert list(tmp_path.iterdir()) == []


def test_connection_closed_early_leaves_nothing(server, tmp_path):
    dest = tmp_path / "images_background.zip"
    with pytest.raises(
        ConnectionError, match=rf"stopped after {len(PAYLOAD) // 2:,} of {len(PAYLOAD):,} bytes"
    ):
        download(f"{server.url}/short", dest, PAYLOAD_MD5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stalled_download_times_out_and_leaves_nothing(server, tmp_path):
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        download(
            f"{server.url}/stall", tmp_path / "x.zip", PAYLOAD_MD5, progress=False, timeout=0.3
        )
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_leaves_the_old_file_untouched(server, tmp_path, monkeypatch):
    class InterruptedBar:
        """A progress bar whose update is where Ctrl-C lands."""

        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "tqdm", InterruptedBar)
    dest = tmp_path / "images_background.zip"
    dest.write_bytes(b"previous version")
    with pytest.raises(KeyboardInterrupt):
        download(f"{server.url}/ok", dest, PAYLOAD_MD5)
    assert list(tmp_path.iterdir()) == [dest] and dest.read_bytes() == b"previous version"


def test_http_error_leaves_nothing(server, tmp_path):
    with pytest.raises(urllib.error.HTTPError):
        download(f"{server.url}/missing.bin", tmp_path / "x.zip", PAYLOAD_MD5, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def omniglot_from(server, monkeypatch):
    """Point Omniglot's download URLs and md5s at the local server."""
    for name in omniglot.OMNIGLOT_MD5:
        server.files[f"/{name}"] = small_zip(name)
        monkeypatch.setitem(omniglot.OMNIGLOT_URLS, name, f"{server.url}/{name}")
        monkeypatch.setitem(omniglot.OMNIGLOT_MD5, name, hashlib.md5(small_zip(name)).hexdigest())
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    return server


def test_find_omniglot_downloads_into_the_cache_once(omniglot_from, tmp_path):
    cache = tmp_path / "cache"
    assert omniglot.find_omniglot(cache_dir=cache, progress=False) == cache
    assert sorted(p.name for p in cache.iterdir()) == [
        "images_background.zip",
        "images_evaluation.zip",
    ]
    assert omniglot.find_omniglot(cache_dir=cache, progress=False) == cache
    assert sorted(omniglot_from.hits) == ["/images_background.zip", "/images_evaluation.zip"]


def test_find_omniglot_rejects_a_download_with_the_wrong_md5(omniglot_from, tmp_path, monkeypatch):
    monkeypatch.setitem(omniglot.OMNIGLOT_MD5, "images_background.zip", "f" * 32)
    with pytest.raises(DataUnavailableError, match=r"images_background.zip .*has md5") as error:
        omniglot.find_omniglot(cache_dir=tmp_path, progress=False)
    assert isinstance(error.value.__cause__, ChecksumError)
    assert list(tmp_path.iterdir()) == []


def test_downloaded_zip_that_is_corrupt_is_explained(tmp_path):
    # A zip whose md5 was right can still be damaged later on disk: loading must say so.
    for name in omniglot.OMNIGLOT_MD5:
        (tmp_path / name).write_bytes(small_zip(name)[:100])
    with pytest.raises(omniglot.OmniglotFormatError, match=r"truncated or corrupt: delete it"):
        omniglot.load_omniglot(tmp_path, cache_dir=tmp_path / "cache", strict=False, progress=False)
