"""Omniglot (Lake et al. 2015): find or download the zips, preprocess once to 28x28, split.

It is one module because finding, checking, preprocessing and caching the data form one path
that every error message describes end to end (where the zips were looked for, what was wrong).

The data arrive as two zips, ``images_background.zip`` (30 alphabets, 964 characters) and
``images_evaluation.zip`` (20 alphabets, 659 characters), each holding
``images_<set>/<Alphabet>/characterNN/IIII_DD.png``: 20 drawings per character, 105x105
pixels, black strokes on white. :func:`load_omniglot` turns them into one uint8 tensor of
shape ``(1623, 20, 28, 28)`` with strokes = 255, cached on disk so that later runs load it in
a fraction of a second.

Where the zips come from, in this order:

1. the ``root`` argument;
2. the environment variable ``MAMLKIT_DATA``;
3. the per-user cache folder (see :func:`default_cache_dir`), downloading them there from the
   canonical URLs if needed, with their published md5 checked. Once the 28x28 cache is built
   there, the zips are no longer needed: without them it is used as it is.

Offline, ``python -m mamlkit data`` shows these places and what each holds, and
``python -m mamlkit data --from FOLDER`` checks a pair of zips and copies them into the cache.

Local copies may be re-packed (so their md5 differs from the published zips); they are
accepted after a check of their structure instead.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mamlkit.data.download import ChecksumError, atomic_write, file_md5
from mamlkit.data.download import download as download_file
from mamlkit.errors import ConfigError, DataError, DataUnavailableError

__all__ = [
    "BACKGROUND_ALPHABETS",
    "EVALUATION_ALPHABETS",
    "OMNIGLOT_MD5",
    "OMNIGLOT_URLS",
    "OmniglotData",
    "OmniglotFormatError",
    "Place",
    "SPLIT_NAMES",
    "SPLIT_SCHEMES",
    "check_task_settings",
    "check_zip",
    "copy_omniglot_from",
    "default_cache_dir",
    "download_omniglot",
    "find_omniglot",
    "load_cached_omniglot",
    "load_omniglot",
    "split_characters",
    "where_omniglot",
]

BACKGROUND_ZIP = "images_background.zip"
EVALUATION_ZIP = "images_evaluation.zip"
OMNIGLOT_BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
OMNIGLOT_URLS = {name: OMNIGLOT_BASE_URL + name for name in (BACKGROUND_ZIP, EVALUATION_ZIP)}
# md5 of the zips as published (the values torchvision and torchmeta check).
OMNIGLOT_MD5 = {
    BACKGROUND_ZIP: "68d2efa1b9178cc56df9314c21c6e718",
    EVALUATION_ZIP: "6b91aef0f799c5bb55b94e3f2daec811",
}

DRAWINGS_PER_CHARACTER = 20
SOURCE_SIZE = 105
IMAGE_SIZE = 28
CACHE_FILE = f"omniglot{IMAGE_SIZE}.npz"
# Bump whenever the preprocessing changes, so that every existing cache gets rebuilt.
PREPROCESSING_VERSION = 1
# What a download fetches: the two published zips, 9,464,212 + 6,462,886 bytes (re-packed
# local copies are smaller, e.g. 14.5 MB; the download is always the published pair).
DOWNLOAD_SIZE = "about 16 MB"

# Characters per alphabet in the published zips: the reference for the strict structure check
# and for the rules of the Vinyals split.
BACKGROUND_ALPHABETS = {
    "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
    "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46,
    "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26, "Burmese_(Myanmar)": 34,
    "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43, "Greek": 24,
    "Gujarati": 48, "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16,
    "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26,
    "Malay_(Jawi_-_Arabic)": 40, "Mkhedruli_(Georgian)": 41, "N_Ko": 33,
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Sanskrit": 42, "Syriac_(Estrangelo)": 23,
    "Tagalog": 17, "Tifinagh": 55,
}  # fmt: skip
EVALUATION_ALPHABETS = {
    "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26,
    "Ge_ez": 26, "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41, "Keble": 26,
    "Malayalam": 47, "Manipuri": 40, "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45,
    "Oriya": 46, "Sylheti": 28, "Syriac_(Serto)": 23, "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
}  # fmt: skip
_PUBLISHED_ALPHABETS = {BACKGROUND_ZIP: BACKGROUND_ALPHABETS, EVALUATION_ZIP: EVALUATION_ALPHABETS}

SPLIT_NAMES = ("train", "val", "test")
SPLIT_SCHEMES = ("maml", "vinyals")

_PNG_NAME = re.compile(r"^\d{4}_(\d{2})\.png$")
_CHARACTER_NAME = re.compile(r"^([^/]+)/character(\d+)$")


class OmniglotFormatError(DataError):
    """An Omniglot zip is corrupt or does not have the expected layout."""


@dataclass
class OmniglotData:
    """All Omniglot characters, resized to 28x28, strokes bright.

    Attributes:
        images: ``(num_characters, 20, 28, 28)`` uint8; 0 is background, 255 is stroke.
        characters: ``num_characters`` names ``"Alphabet/characterNN"``, sorted;
            ``images[i]`` holds the 20 drawings of ``characters[i]``, in drawing order.
        background: ``num_characters`` flags, True where the character comes from
            ``images_background.zip`` and False for ``images_evaluation.zip``.
    """

    images: torch.Tensor
    characters: list[str]
    background: list[bool]

    def __len__(self) -> int:
        return len(self.characters)


# ----------------------------------------------------------------------------- locating


def default_cache_dir() -> Path:
    """Per-user folder for downloaded zips and the preprocessed cache.

    ``$MAMLKIT_CACHE/omniglot`` if ``MAMLKIT_CACHE`` is set, else
    ``$XDG_CACHE_HOME/mamlkit/omniglot``, else ``~/.cache/mamlkit/omniglot``.
    """
    if os.environ.get("MAMLKIT_CACHE"):
        return Path(os.environ["MAMLKIT_CACHE"]).expanduser() / "omniglot"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mamlkit" / "omniglot"
    return Path.home() / ".cache" / "mamlkit" / "omniglot"


def _missing_zips(folder: Path) -> list[str]:
    return [name for name in OMNIGLOT_MD5 if not (folder / name).is_file()]


def _ways_out(folder: Path) -> str:
    return (
        f"Two ways out: put {BACKGROUND_ZIP} and {EVALUATION_ZIP} in {folder} by hand "
        f"(`python -m mamlkit data --from FOLDER` copies them there after checking them), or set "
        "MAMLKIT_DATA to a folder that holds them. `python -m mamlkit data` shows where mamlkit "
        "looks and what it finds."
    )


def _download_failure(url: str, error: BaseException) -> str:
    """Why a download failed, in a few words (the server's answer, the network's, a count)."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"the network said: {error.reason}"
    if isinstance(error, TimeoutError):
        return "the server did not answer in time"
    return str(error).rstrip(".")


def find_omniglot(
    root: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """The folder that holds ``images_background.zip`` and ``images_evaluation.zip``.

    Looks at ``root``, then at ``$MAMLKIT_DATA``, then at the cache folder; only the cache
    folder is ever downloaded into. A failed download leaves nothing half-written there.

    Args:
        root: a folder that must hold both zips. Overrides ``MAMLKIT_DATA``.
        download: when neither ``root`` nor ``MAMLKIT_DATA`` is given and the cache folder
            lacks the zips, download them (md5-checked) instead of raising.
        cache_dir: the cache folder; default :func:`default_cache_dir`.
        progress: show download progress bars.

    Raises:
        DataUnavailableError: the folder that was asked for lacks the zips, or they could not
            be downloaded (no network, a server error, a download cut short or with the wrong
            md5). A ``FileNotFoundError``; the message names the URL, the reason, where the
            zips are expected and the two ways out.
    """
    if root is not None:
        return _require_zips(Path(root).expanduser(), "the root argument", "call without root")
    if os.environ.get("MAMLKIT_DATA"):
        return _require_zips(
            Path(os.environ["MAMLKIT_DATA"]).expanduser(),
            "the MAMLKIT_DATA environment variable",
            "unset MAMLKIT_DATA",
        )

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    missing = _missing_zips(folder)
    if missing and not download:
        raise DataUnavailableError(
            f"Omniglot is not in the cache folder {folder} (missing: {', '.join(missing)}) "
            f"and download=False. Pass download=True, or set MAMLKIT_DATA to a folder holding "
            f"{BACKGROUND_ZIP} and {EVALUATION_ZIP}."
        )
    for name in missing:
        _download_zip(name, folder, progress=progress)
    return folder


def _download_zip(name: str, folder: Path, *, progress: bool) -> Path:
    """Download one zip into ``folder``, md5-checked; a DataUnavailableError if that fails."""
    import urllib.error

    url = OMNIGLOT_URLS[name]
    try:
        return download_file(url, folder / name, OMNIGLOT_MD5[name], progress=progress)
    except (urllib.error.URLError, OSError, ChecksumError) as error:
        if isinstance(error, OSError) and error.filename is not None:
            # Not the network: the cache folder itself cannot be written.
            raise DataUnavailableError(
                f"Could not save Omniglot in the cache folder {folder}: {error.strerror} "
                f"({error.filename}). Set MAMLKIT_CACHE to a folder you can write, or "
                f"MAMLKIT_DATA to a folder that holds {BACKGROUND_ZIP} and {EVALUATION_ZIP}."
            ) from error
        raise DataUnavailableError(
            f"Could not download Omniglot: fetching {url} failed ({_download_failure(url, error)}); "
            f"nothing half-written was left in {folder}. {_ways_out(folder)}"
        ) from error


def _require_zips(folder: Path, source: str, how_to_download: str) -> Path:
    missing = _missing_zips(folder)
    if missing:
        if folder.is_file():
            state = "is a file, not a folder"
        elif not folder.is_dir():
            state = "does not exist"
        else:
            state = f"lacks {' and '.join(missing)}"
        urls = " and ".join(OMNIGLOT_URLS[name] for name in missing)
        error = DataUnavailableError(
            f"The Omniglot folder {folder} (given by {source}) {state}; it must hold "
            f"{BACKGROUND_ZIP} and {EVALUATION_ZIP}. Download them from {urls} into that "
            f"folder, or {how_to_download} to let mamlkit download them automatically into "
            f"{default_cache_dir()}."
        )
        error.exit_status = 2  # a folder the user named: the command cannot work as typed
        raise error
    return folder


# ------------------------------------------------------------------- the data command


@dataclass
class Place:
    """One place :func:`find_omniglot` looks at, and what is there.

    Attributes:
        label: where the place comes from, e.g. ``"$MAMLKIT_DATA"``.
        folder: the folder, or None if not given.
        found: for each zip name, ``"md5 as published"``, ``"re-packed copy (md5 differs)"`` or
            ``"missing"``.
    """

    label: str
    folder: Path | None
    found: dict[str, str]

    @property
    def complete(self) -> bool:
        return self.folder is not None and all(v != "missing" for v in self.found.values())


def where_omniglot(root: str | Path | None = None, *, cache_dir: str | Path | None = None,
                   check_md5: bool = True) -> list[Place]:
    """The places :func:`find_omniglot` looks at, in its order, with what each holds.

    The first complete place is the one used (``root`` and ``MAMLKIT_DATA``, when given, are
    used even when incomplete: then loading fails with a message).
    """
    places = [
        Place("--data-root / the root argument", Path(root).expanduser() if root else None, {}),
        Place("$MAMLKIT_DATA", Path(os.environ["MAMLKIT_DATA"]).expanduser()
              if os.environ.get("MAMLKIT_DATA") else None, {}),
        Place("the cache folder (downloads go here)",
              Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(), {}),
    ]
    for place in places:
        if place.folder is None:
            continue
        for name, md5 in OMNIGLOT_MD5.items():
            path = place.folder / name
            if not path.is_file():
                place.found[name] = "missing"
            elif not check_md5:
                place.found[name] = f"present ({path.stat().st_size:,} bytes)"
            elif file_md5(path) == md5:
                place.found[name] = "md5 as published"
            else:
                place.found[name] = "re-packed copy (md5 differs from the published zip)"
    return places


def check_zip(path: Path) -> int:
    """Check one Omniglot zip without decoding its images; return its number of characters.

    Reads the archive's index and every entry's CRC, and checks the layout and the published
    alphabets (as ``load_omniglot(strict=True)`` does).

    Raises:
        OmniglotFormatError: the file is not a zip, is damaged, or is laid out differently.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise _bad_zip(path, f"the entry {bad} is damaged (CRC mismatch)")
            characters = _list_characters(archive, path)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise _bad_zip(path, str(error)) from error
    names = sorted(characters)
    if path.name in _PUBLISHED_ALPHABETS:
        _check_one_zip_counts(names, path)
    return len(names)


def _check_one_zip_counts(characters: list[str], path: Path) -> None:
    published = _PUBLISHED_ALPHABETS[path.name]
    counts: dict[str, int] = {}
    for name in characters:
        alphabet = name.split("/")[0]
        counts[alphabet] = counts.get(alphabet, 0) + 1
    if counts != published:
        raise OmniglotFormatError(
            f"{path} has {len(counts)} alphabets and {sum(counts.values())} characters, but the "
            f"published zip has {len(published)} and {sum(published.values())}: it is not a "
            f"complete copy of {path.name}."
        )


def copy_omniglot_from(source: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """Check the two zips in ``source`` and copy them into the cache folder.

    Each zip is checked (:func:`check_zip`) before anything is copied; each copy is atomic, so
    an interrupted copy leaves nothing half-written in the cache.

    Returns:
        The cache folder.

    Raises:
        DataUnavailableError: ``source`` is not a folder holding both zips.
        OmniglotFormatError: a zip is damaged or not the published one.
    """
    source = Path(source).expanduser()
    _require_zips(source, "--from", "use `python -m mamlkit data --download`")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for name in OMNIGLOT_MD5:
        check_zip(source / name)
    if source.resolve() == folder.resolve():
        return folder
    for name in OMNIGLOT_MD5:
        with open(source / name, "rb") as src, atomic_write(folder / name) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return folder


def download_omniglot(*, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Download the zips the cache folder lacks (md5-checked) and check both.

    Returns:
        The cache folder.

    Raises:
        DataUnavailableError: a download failed (the message says why and what to do).
        OmniglotFormatError: a zip already in the cache is damaged (delete it and run again).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for name in _missing_zips(folder):
        _download_zip(name, folder, progress=progress)
    for name in OMNIGLOT_MD5:
        check_zip(folder / name)
    return folder


def check_task_settings(n_way: int, k_shot: int, n_query: int, scheme: str = "maml") -> None:
    """Check an Omniglot task shape before any data is loaded.

    Raises:
        ConfigError: ``k_shot + n_query`` exceeds the 20 drawings of a character, ``n_way``
            exceeds the characters of the smallest part of the split (100 validation
            characters for ``"maml"``, 172 for ``"vinyals"``), or ``scheme`` is unknown.
    """
    if scheme not in SPLIT_SCHEMES:
        raise ConfigError(f"split must be one of {', '.join(map(repr, SPLIT_SCHEMES))}, got {scheme!r}")
    if k_shot + n_query > DRAWINGS_PER_CHARACTER:
        raise ConfigError(
            f"k_shot + n_query = {k_shot} + {n_query} = {k_shot + n_query}, but each Omniglot "
            f"character has only {DRAWINGS_PER_CHARACTER} drawings"
        )
    smallest = {"maml": _MAML_NUM_VAL, "vinyals": _VINYALS_NUM_VAL}[scheme]
    if n_way > smallest:
        raise ConfigError(
            f"n_way = {n_way}, but the {scheme!r} split has only {smallest} validation characters "
            f"to draw {n_way} classes from"
        )


# ------------------------------------------------------------------------ preprocessing


def load_omniglot(
    root: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = True,
    strict: bool = True,
    progress: bool = True,
) -> OmniglotData:
    """Load all Omniglot characters as 28x28 uint8 images, preprocessing them on first use.

    The zips are found as in :func:`find_omniglot`. Preprocessing (about 10 s) resizes each
    105x105 drawing to 28x28 with a Lanczos filter, inverts it so that strokes are bright,
    and saves the result as ``omniglot28.npz`` in the cache folder. The cache remembers the
    size and modification time of the zips and is rebuilt when they change.

    Args:
        root: folder holding both zips; overrides ``MAMLKIT_DATA`` and the cache folder.
        cache_dir: where the preprocessed cache (and any download) goes; default
            :func:`default_cache_dir`.
        download: allow downloading the zips into the cache folder if they are not found.
        strict: require the published alphabets and characters (50 alphabets, 1623
            characters). Pass False for a reduced copy, e.g. a synthetic one in a test;
            every character must still have 20 drawings of 105x105 pixels.
        progress: show progress bars.

    Returns:
        :class:`OmniglotData` with images of shape ``(num_characters, 20, 28, 28)``.

    Raises:
        DataUnavailableError: the zips were not found and could not be downloaded (see
            :func:`find_omniglot`); a ``FileNotFoundError``.
        OmniglotFormatError: a zip is corrupt or laid out differently.
    """
    cache_folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_path = cache_folder / CACHE_FILE
    if root is None and not os.environ.get("MAMLKIT_DATA") and _missing_zips(cache_folder):
        # Offline with the zips gone but the preprocessed images kept: they are all that is needed.
        data = load_cached_omniglot(cache_dir)
        if data is not None:
            if strict:
                _check_published_counts(data.characters, data.background, cache_folder)
            return data
    folder = find_omniglot(root, download=download, cache_dir=cache_dir, progress=progress)
    fingerprint = _fingerprint(folder)

    data = _read_cache(cache_path, fingerprint)
    if data is None:
        data = _preprocess(folder, strict=strict, progress=progress)
        _write_cache(cache_path, data, fingerprint)
    if strict:
        # Checked on cache hits too: a cache built with strict=False says nothing about counts.
        _check_published_counts(data.characters, data.background, folder)
    return data


def _fingerprint(folder: Path) -> str:
    """What identifies the source zips and the preprocessing, as a JSON string."""
    sources = {}
    for name in sorted(OMNIGLOT_MD5):
        stat = (folder / name).stat()
        sources[name] = [stat.st_size, stat.st_mtime_ns]
    return json.dumps({"version": PREPROCESSING_VERSION, "size": IMAGE_SIZE, "sources": sources})


def _read_cache(path: Path, fingerprint: str) -> OmniglotData | None:
    """The cached data, or None if there is no usable cache for this fingerprint."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            if str(cache["fingerprint"]) != fingerprint:
                print(f"Omniglot source or preprocessing changed; rebuilding {path}")
                return None
            return OmniglotData(
                images=torch.from_numpy(cache["images"]),
                characters=cache["characters"].tolist(),
                background=cache["background"].tolist(),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        # A damaged cache is only a lost speed-up: rebuild it rather than fail.
        print(f"Cannot read the Omniglot cache {path} ({error}); rebuilding it")
        return None


def load_cached_omniglot(cache_dir: str | Path | None = None) -> OmniglotData | None:
    """The preprocessed images in the cache folder, whether or not the zips are still there.

    The cache is used if this version of the preprocessing made it (its recorded version and
    image size) and its arrays have the shapes :class:`OmniglotData` describes; the zips it was
    built from are not compared (see :func:`load_omniglot`, which does when they are present).

    Returns:
        The data, or None when there is no such cache (missing, damaged, older or other size).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / CACHE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            made = json.loads(str(cache["fingerprint"]))
            if made.get("version") != PREPROCESSING_VERSION or made.get("size") != IMAGE_SIZE:
                return None
            images, characters, background = cache["images"], cache["characters"], cache["background"]
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile):
        return None
    shape = (DRAWINGS_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE)
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape
            or characters.shape != images.shape[:1] or background.shape != images.shape[:1]):
        return None
    return OmniglotData(torch.from_numpy(images), characters.tolist(), background.tolist())


def _write_cache(path: Path, data: OmniglotData, fingerprint: str) -> None:
    with atomic_write(path) as f:
        # Uncompressed on purpose: 25 MB that load in milliseconds beat 2 MB that take longer.
        np.savez(
            f,
            images=data.images.numpy(),
            characters=np.array(data.characters, dtype=str),
            background=np.array(data.background, dtype=bool),
            fingerprint=np.array(fingerprint),
        )


def _bad_zip(path: Path, problem: str) -> OmniglotFormatError:
    return OmniglotFormatError(
        f"{path} is not a usable Omniglot zip: {problem}. The file may be truncated or "
        f"corrupt: delete it and download it again from "
        f"{OMNIGLOT_URLS.get(path.name, OMNIGLOT_BASE_URL)} (in the cache folder, mamlkit "
        "downloads a fresh copy by itself)."
    )


def _list_characters(archive: zipfile.ZipFile, path: Path) -> dict[str, list[str]]:
    """Map ``"Alphabet/characterNN"`` to its 20 PNG entry names, in drawing order.

    Checks the layout ``images_<set>/<Alphabet>/characterNN/IIII_DD.png`` and that every
    character has exactly the drawings 01..20.
    """
    top = path.name.removesuffix(".zip")  # "images_background" or "images_evaluation"
    drawings: dict[str, dict[int, str]] = {}
    for entry in archive.namelist():
        if entry.endswith("/") or entry.startswith("__MACOSX/"):
            continue  # folders, and the resource forks macOS adds to zips
        parts = entry.split("/")
        if len(parts) != 4 or parts[0] != top or not parts[2].startswith("character"):
            layout = f"{top}/<Alphabet>/characterNN/IIII_DD.png"
            raise _bad_zip(path, f"unexpected entry {entry!r}, expected {layout}")
        match = _PNG_NAME.match(parts[3])
        if match is None:
            raise _bad_zip(path, f"unexpected file name {entry!r}, expected IIII_DD.png")
        drawings.setdefault(f"{parts[1]}/{parts[2]}", {})[int(match.group(1))] = entry

    if not drawings:
        raise _bad_zip(path, f"it holds no PNG files under {top}/")
    expected = list(range(1, DRAWINGS_PER_CHARACTER + 1))
    for character, by_index in drawings.items():
        if sorted(by_index) != expected:
            raise _bad_zip(
                path,
                f"{character} has drawings {sorted(by_index)}, but every Omniglot character "
                f"has exactly the drawings 1..{DRAWINGS_PER_CHARACTER}",
            )
    return {name: [by_index[i] for i in expected] for name, by_index in drawings.items()}


def _check_published_counts(characters: list[str], background: list[bool], folder: Path) -> None:
    """Raise unless every alphabet and its number of characters match the published zips."""
    for zip_name, published in _PUBLISHED_ALPHABETS.items():
        is_background = zip_name == BACKGROUND_ZIP
        counts: dict[str, int] = {}
        for name, flag in zip(characters, background, strict=True):
            if flag == is_background:
                alphabet = name.split("/")[0]
                counts[alphabet] = counts.get(alphabet, 0) + 1
        if counts != published:
            missing = sorted(set(published) - set(counts))
            unexpected = sorted(set(counts) - set(published))
            wrong = sorted(a for a in set(counts) & set(published) if counts[a] != published[a])
            raise OmniglotFormatError(
                f"{folder / zip_name} has {len(counts)} alphabets and {sum(counts.values())} "
                f"characters, but the published zip has {len(published)} and "
                f"{sum(published.values())} (missing alphabets: {missing or 'none'}; "
                f"unexpected: {unexpected or 'none'}; wrong character counts: "
                f"{wrong or 'none'}). For a deliberately reduced copy pass strict=False; "
                "otherwise delete the zip and download it again."
            )


def _preprocess(folder: Path, *, strict: bool, progress: bool) -> OmniglotData:
    """Decode, resize and invert every drawing of both zips (the slow step, done once)."""
    paths = {name: folder / name for name in (BACKGROUND_ZIP, EVALUATION_ZIP)}
    archives: dict[str, zipfile.ZipFile] = {}
    try:
        sources: dict[str, tuple[str, list[str]]] = {}  # character -> (zip name, entries)
        for zip_name, path in paths.items():
            try:
                archives[zip_name] = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as error:
                raise _bad_zip(path, str(error)) from error
            for character, entries in _list_characters(archives[zip_name], path).items():
                if character in sources:
                    raise OmniglotFormatError(
                        f"{character} appears in both {BACKGROUND_ZIP} and {EVALUATION_ZIP} "
                        f"in {folder}; each alphabet belongs to exactly one of them."
                    )
                sources[character] = (zip_name, entries)

        characters = sorted(sources)
        background = [sources[c][0] == BACKGROUND_ZIP for c in characters]
        if strict:  # fail before the slow part
            _check_published_counts(characters, background, folder)

        images = np.empty(
            (len(characters), DRAWINGS_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8
        )
        with tqdm(
            total=len(characters) * DRAWINGS_PER_CHARACTER,
            desc=f"Preprocessing Omniglot to {IMAGE_SIZE}x{IMAGE_SIZE}",
            unit="img",
            disable=not progress,
        ) as bar:
            for i, character in enumerate(characters):
                zip_name, entries = sources[character]
                for j, entry in enumerate(entries):
                    images[i, j] = _load_drawing(archives[zip_name], entry, paths[zip_name])
                    bar.update()
    finally:
        for archive in archives.values():
            archive.close()
    return OmniglotData(torch.from_numpy(images), characters, background)


def _load_drawing(archive: zipfile.ZipFile, entry: str, path: Path) -> np.ndarray:
    """One drawing as a ``(28, 28)`` uint8 array, strokes = 255."""
    try:
        image = Image.open(io.BytesIO(archive.read(entry)))
        image.load()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        # PIL.UnidentifiedImageError is an OSError; a bad CRC is a BadZipFile.
        raise _bad_zip(path, f"cannot decode {entry} ({error})") from error
    if image.size != (SOURCE_SIZE, SOURCE_SIZE):
        width, height = image.size
        expected = f"{SOURCE_SIZE}x{SOURCE_SIZE}"
        raise _bad_zip(path, f"{entry} is {width}x{height} pixels, expected {expected}")
    # Pillow resizes 1-bit images with nearest neighbour whatever filter is asked for, so
    # convert to 8-bit grey first: only then does LANCZOS really anti-alias.
    small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)  # black strokes on white -> bright strokes


# ----------------------------------------------------------------------------- splits


def split_characters(
    characters: Sequence[str], scheme: str = "maml", seed: int = 1
) -> dict[str, list[int]]:
    """Split characters into meta-train, meta-val and meta-test, as indices into ``characters``.

    Schemes:

    - ``"maml"`` (Finn et al. 2017): sort the names, shuffle them with
      ``random.Random(seed)``, take 1100 train, 100 val and the rest (423 of 1623) as test.
      The MAML code shuffled an unsorted ``os.listdir`` order; sorting first makes the split
      the same on every machine.
    - ``"vinyals"`` (Vinyals et al. 2016, used by ProtoNets and torchmeta): fixed by alphabet,
      1028 / 172 / 423 characters. ``seed`` is not used.

    Args:
        characters: names ``"Alphabet/characterNN"``, e.g. ``OmniglotData.characters``.
        scheme: ``"maml"`` or ``"vinyals"``.
        seed: seed of the ``"maml"`` shuffle.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, disjoint lists of indices into
        ``characters``, each sorted ascending.
    """
    if len(set(characters)) != len(characters):
        raise ValueError("characters contains duplicate names; each character must appear once")
    if scheme == "maml":
        return _maml_split(characters, seed)
    if scheme == "vinyals":
        return _vinyals_split(characters)
    raise ValueError(
        f"unknown split scheme {scheme!r}; allowed: {', '.join(map(repr, SPLIT_SCHEMES))}"
    )


_MAML_NUM_TRAIN = 1100
_MAML_NUM_VAL = 100
_VINYALS_NUM_VAL = 172


def _maml_split(characters: Sequence[str], seed: int) -> dict[str, list[int]]:
    if len(characters) <= _MAML_NUM_TRAIN + _MAML_NUM_VAL:
        raise ValueError(
            f"the 'maml' split takes {_MAML_NUM_TRAIN} train and {_MAML_NUM_VAL} val characters "
            f"and the rest as test, so it needs more than {_MAML_NUM_TRAIN + _MAML_NUM_VAL}, but "
            f"{len(characters)} were given"
        )
    order = sorted(range(len(characters)), key=lambda i: characters[i])
    random.Random(seed).shuffle(order)
    cut_val, cut_test = _MAML_NUM_TRAIN, _MAML_NUM_TRAIN + _MAML_NUM_VAL
    parts = {"train": order[:cut_val], "val": order[cut_val:cut_test], "test": order[cut_test:]}
    return {name: sorted(indices) for name, indices in parts.items()}


# The Vinyals split, by alphabet: validation takes five background alphabets; training takes
# the other 25 background alphabets, seven evaluation alphabets and the first 41 of the 45
# Gurmukhi characters; testing takes the last four Gurmukhi characters and the other 12
# evaluation alphabets.
_VINYALS_VAL_ALPHABETS = {"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"}
_VINYALS_TRAIN_EVALUATION_ALPHABETS = {
    "Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta", "Ge_ez", "Glagolitic",
}  # fmt: skip
_VINYALS_SHARED_ALPHABET = "Gurmukhi"
_VINYALS_SHARED_LAST_TRAIN = 41


def _vinyals_split_of(character: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one ``"Alphabet/characterNN"`` name."""
    match = _CHARACTER_NAME.match(character)
    if match is None:
        raise ValueError(
            f"cannot parse character name {character!r}; expected 'Alphabet/characterNN'"
        )
    alphabet, number = match.group(1), int(match.group(2))
    if alphabet in _VINYALS_VAL_ALPHABETS:
        return "val"
    if alphabet in BACKGROUND_ALPHABETS or alphabet in _VINYALS_TRAIN_EVALUATION_ALPHABETS:
        return "train"
    if alphabet == _VINYALS_SHARED_ALPHABET:
        return "train" if number <= _VINYALS_SHARED_LAST_TRAIN else "test"
    if alphabet in EVALUATION_ALPHABETS:
        return "test"
    raise ValueError(
        f"{character!r} is not from one of the 50 published Omniglot alphabets, so the "
        "'vinyals' split does not place it; use scheme='maml' or your own indices"
    )


def _vinyals_split(characters: Sequence[str]) -> dict[str, list[int]]:
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for i, character in enumerate(characters):
        parts[_vinyals_split_of(character)].append(i)
    return parts
