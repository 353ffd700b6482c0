"""Download a file safely: stream it, check its md5, and only then put it in place.

A download that fails half-way (network error, wrong checksum, Ctrl-C) must not leave a
half-written file behind that a later run would take for the real thing. So bytes go to a
temporary file next to the destination, and ``os.replace`` moves it there only once it is
complete and verified (a rename within one folder is atomic).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from mamlkit.errors import DataError

__all__ = ["ChecksumError", "atomic_write", "download", "file_md5"]

_CHUNK_SIZE = 1 << 16


class ChecksumError(DataError):
    """The bytes received do not have the md5 they were published with."""


@contextmanager
def atomic_write(dest: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``dest`` for binary writing; move it to ``dest`` on success.

    If the ``with`` block raises anything (``KeyboardInterrupt`` included), the temporary file
    is removed and ``dest`` is left exactly as it was.

    Args:
        dest: final path of the file. Its folder is created if needed.

    Yields:
        A binary file object, open for writing.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A hidden, random name in the same folder: os.replace is only atomic within a filesystem,
    # and two processes writing the same dest at once must not share a temporary file.
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_md5(path: Path) -> str:
    """Hex md5 digest of a file, read in chunks so that large files need little memory."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str, dest: Path, md5: str, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` and check that the bytes have the given md5.

    Nothing appears at ``dest`` unless the whole file arrived and its md5 matches: on a wrong
    checksum, a connection that closes early, a timeout or ``KeyboardInterrupt``, the partial
    download is deleted and the error is raised.

    Args:
        url: where to fetch the file (``http://``, ``https://`` or ``file://``).
        dest: where to save it; its folder is created if needed.
        md5: expected hex md5 digest of the file (case-insensitive).
        progress: show a progress bar in bytes.
        timeout: seconds to wait for the server before giving up.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the md5 of the downloaded bytes is not ``md5``.
        ConnectionError: the server sent fewer bytes than it announced.
        urllib.error.URLError: the server could not be reached or refused the request.
    """
    dest = Path(dest)
    digest = hashlib.md5()
    received = 0
    with atomic_write(dest) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        expected_bytes = int(length) if length is not None else None
        with tqdm(
            total=expected_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
        ) as bar:
            for chunk in iter(lambda: response.read(_CHUNK_SIZE), b""):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        # urllib treats a connection closed early as a normal end of file, so count the bytes.
        if expected_bytes is not None and received != expected_bytes:
            raise ConnectionError(
                f"download of {url} stopped after {received:,} of {expected_bytes:,} bytes; "
                f"nothing was saved to {dest}. Run again to retry."
            )
        actual = digest.hexdigest()
        if actual != md5.lower():
            raise ChecksumError(
                f"{dest.name} downloaded from {url} has md5 {actual}, but {md5.lower()} was "
                f"expected; the file was not saved to {dest}. The server may have sent an "
                "error page or a different version of the file."
            )
    print(f"Downloaded {url} to {dest} ({received:,} bytes, md5 verified)")
    return dest
