"""Tests of mamlkit.data.omniglot: finding, preprocessing, caching and splitting Omniglot.

Most tests build a small pair of zips in the official layout. The tests marked ``real_data``
run on the full data set when ``MAMLKIT_DATA`` points at a folder holding it (CI sets
``MAMLKIT_DATA=../shared/data/omniglot``); the preprocessed cache goes to the usual cache folder
(``MAMLKIT_CACHE`` or ``~/.cache/mamlkit``), so it is built only once across runs.
"""

import io
import json
import os
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mamlkit.data import omniglot
from mamlkit.data.omniglot import (
    BACKGROUND_ALPHABETS,
    EVALUATION_ALPHABETS,
    OmniglotFormatError,
    default_cache_dir,
    find_omniglot,
    load_omniglot,
    split_characters,
)

SMALL_SET = {
    "images_background": {"Zeta_(Test)": 2, "Alpha": 3},
    "images_evaluation": {"Gamma": 2},
}


def random_strokes(rng: random.Random) -> Image.Image:
    """A 105x105 1-bit drawing like Omniglot's: black strokes on white."""
    image = Image.new("1", (105, 105), 1)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        points = [(rng.randrange(105), rng.randrange(105)) for _ in range(3)]
        draw.line(points, fill=0, width=3)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_omniglot_zips(
    folder: Path, layout=SMALL_SET, seed: int = 0, drawing=None
) -> dict[str, list[Image.Image]]:
    """Write ``images_background.zip`` and ``images_evaluation.zip`` in the official layout.

    Args:
        layout: ``{top folder: {alphabet: number of characters}}``.
        drawing: optional ``(character name, drawing index 1..20) -> image``; default random
            strokes.

    Returns:
        ``{"Alphabet/characterNN": [20 drawings, in order]}``.
    """
    rng = random.Random(seed)
    drawing = drawing or (lambda name, index: random_strokes(rng))
    folder.mkdir(parents=True, exist_ok=True)
    drawings, global_id = {}, 0
    for top, alphabets in layout.items():
        with zipfile.ZipFile(folder / f"{top}.zip", "w") as archive:
            archive.writestr(f"{top}/", b"")
            for alphabet, count in alphabets.items():
                archive.writestr(f"{top}/{alphabet}/", b"")
                for c in range(1, count + 1):
                    global_id += 1
                    name = f"{alphabet}/character{c:02d}"
                    archive.writestr(f"{top}/{name}/", b"")
                    drawings[name] = [drawing(name, d) for d in range(1, 21)]
                    for d, image in enumerate(drawings[name], start=1):
                        archive.writestr(
                            f"{top}/{name}/{global_id:04d}_{d:02d}.png", png_bytes(image)
                        )
    return drawings


def expected_28(image: Image.Image) -> np.ndarray:
    """The specified preprocessing: 8-bit grey, Lanczos to 28x28, inverted."""
    return 255 - np.asarray(image.convert("L").resize((28, 28), Image.Resampling.LANCZOS))


@pytest.fixture
def small(tmp_path):
    """A synthetic data folder and an empty cache folder."""
    drawings = write_omniglot_zips(tmp_path / "data")
    return tmp_path / "data", tmp_path / "cache", drawings


def load_small(data_dir, cache_dir, **kwargs):
    return load_omniglot(data_dir, cache_dir=cache_dir, strict=False, progress=False, **kwargs)


# --------------------------------------------------------------------- synthetic data


def test_loads_synthetic_zips_sorted_and_merged(small):
    data_dir, cache_dir, drawings = small
    data = load_small(data_dir, cache_dir)
    assert data.characters == sorted(drawings)  # background and evaluation merged, sorted
    assert data.characters[0] == "Alpha/character01"
    assert data.background == [not name.startswith("Gamma") for name in data.characters]
    assert data.images.shape == (7, 20, 28, 28) and data.images.dtype == torch.uint8
    assert len(data) == 7
    for i, name in enumerate(data.characters):
        for j in range(20):
            assert np.array_equal(data.images[i, j].numpy(), expected_28(drawings[name][j])), (
                name,
                j,
            )


def test_strokes_become_bright_and_orientation_is_kept(tmp_path):
    def drawing(name, index):
        image = Image.new("1", (105, 105), 1)  # white page
        if index == 2:
            ImageDraw.Draw(image).rectangle((0, 0, 51, 51), fill=0)  # black top-left block
        return image

    layout = {"images_background": {"A": 1}, "images_evaluation": {"B": 1}}
    write_omniglot_zips(tmp_path / "data", layout, drawing=drawing)
    data = load_small(tmp_path / "data", tmp_path / "cache")
    assert data.images[0, 0].max() == 0  # blank page -> all zeros
    block = data.images[0, 1]
    # The block ends at 52 / 105 * 28 = 13.9 pixels; Lanczos blurs about one pixel around it.
    assert block[:12, :12].min() >= 250 and block[16:, :].max() <= 5 and block[:, 16:].max() <= 5


def test_strict_check_rejects_a_reduced_copy(small):
    data_dir, cache_dir, _ = small
    with pytest.raises(
        OmniglotFormatError, match=r"published zip has 30 and 964.*pass strict=False"
    ):
        load_omniglot(data_dir, cache_dir=cache_dir, progress=False)
    load_small(data_dir, cache_dir)  # builds the cache
    with pytest.raises(OmniglotFormatError, match=r"strict=False"):  # a cache hit is checked too
        load_omniglot(data_dir, cache_dir=cache_dir, progress=False)


def test_cache_is_reused_and_rebuilt_when_a_zip_changes(small, monkeypatch):
    data_dir, cache_dir, _ = small
    first = load_small(data_dir, cache_dir)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["omniglot28.npz"]  # no temp files
    assert not (data_dir / "omniglot28.npz").exists()  # the data folder may be read-only

    def must_not_run(*args, **kwargs):
        raise AssertionError("preprocessed again although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(omniglot, "_preprocess", must_not_run)
        start = time.perf_counter()
        again = load_small(data_dir, cache_dir)
        assert time.perf_counter() - start < 1.0
    assert torch.equal(first.images, again.images)
    assert (first.characters, first.background) == (again.characters, again.background)

    stat = (data_dir / "images_evaluation.zip").stat()
    os.utime(data_dir / "images_evaluation.zip", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls = []
    real_preprocess = omniglot._preprocess
    monkeypatch.setattr(
        omniglot, "_preprocess", lambda *a, **k: calls.append(1) or real_preprocess(*a, **k)
    )
    load_small(data_dir, cache_dir)
    assert calls == [1]


def test_damaged_cache_is_rebuilt(small, capsys):
    data_dir, cache_dir, _ = small
    first = load_small(data_dir, cache_dir)
    (cache_dir / "omniglot28.npz").write_bytes(b"not an npz file")
    again = load_small(data_dir, cache_dir)
    assert "rebuilding" in capsys.readouterr().out
    assert torch.equal(first.images, again.images)


def test_truncated_zip_is_explained(small):
    data_dir, cache_dir, _ = small
    path = data_dir / "images_background.zip"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(
        OmniglotFormatError, match=r"images_background.zip is not a usable .*delete it"
    ):
        load_small(data_dir, cache_dir)


def test_corrupt_png_is_explained(tmp_path):
    def drawing(name, index):
        return (
            None if (name, index) == ("B/character01", 7) else random_strokes(random.Random(index))
        )

    folder = tmp_path / "data"
    folder.mkdir()
    with zipfile.ZipFile(folder / "images_background.zip", "w") as archive:
        for d in range(1, 21):
            archive.writestr(
                f"images_background/A/character01/0001_{d:02d}.png",
                png_bytes(drawing("A/character01", d)),
            )
    with zipfile.ZipFile(folder / "images_evaluation.zip", "w") as archive:
        for d in range(1, 21):
            image = drawing("B/character01", d)
            archive.writestr(
                f"images_evaluation/B/character01/0002_{d:02d}.png",
                b"garbage" if image is None else png_bytes(image),
            )
    with pytest.raises(
        OmniglotFormatError,
        match=r"images_evaluation.zip.*cannot decode images_evaluation/B/character01/0002_07.png"
        r".*delete it",
    ):
        load_small(folder, tmp_path / "cache")
    assert not (tmp_path / "cache" / "omniglot28.npz").exists()


def test_missing_drawing_and_wrong_size_are_explained(tmp_path):
    def small_image(name, index):
        return Image.new("1", (100, 105), 1) if index == 3 else Image.new("1", (105, 105), 1)

    layout = {"images_background": {"A": 1}, "images_evaluation": {"B": 1}}
    write_omniglot_zips(tmp_path / "size", layout, drawing=small_image)
    with pytest.raises(
        OmniglotFormatError, match=r"0001_03.png is 100x105 pixels, expected 105x105"
    ):
        load_small(tmp_path / "size", tmp_path / "cache")

    write_omniglot_zips(tmp_path / "count", layout)
    path = tmp_path / "count" / "images_evaluation.zip"
    with zipfile.ZipFile(path) as archive:
        entries = {
            name: archive.read(name) for name in archive.namelist() if not name.endswith("_20.png")
        }
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(
        OmniglotFormatError,
        match=r"B/character01 has drawings \[1, .*, 19\], but every Omniglot character has "
        r"exactly the drawings 1..20",
    ):
        load_small(tmp_path / "count", tmp_path / "cache")


# ------------------------------------------------------------------------ finding data


def test_folder_without_zips_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        find_omniglot(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    assert "images_background.zip" in message and "images_evaluation.zip" in message
    assert "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/" in message


def test_empty_mamlkit_data_folder_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMLKIT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(
        FileNotFoundError, match=r"(?s)MAMLKIT_DATA.*does not exist.*unset MAMLKIT_DATA"
    ):
        find_omniglot(download=False)


def test_root_argument_overrides_mamlkit_data(small, monkeypatch, tmp_path):
    data_dir, _, _ = small
    monkeypatch.setenv("MAMLKIT_DATA", str(tmp_path / "nowhere"))
    assert find_omniglot(data_dir) == data_dir
    monkeypatch.setenv("MAMLKIT_DATA", str(data_dir))
    assert find_omniglot() == data_dir


def test_cache_folder_without_zips_and_no_download(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"download=False.*MAMLKIT_DATA"):
        find_omniglot(download=False, cache_dir=tmp_path)


def test_a_built_cache_is_enough_without_the_zips(small, monkeypatch):
    data_dir, cache_dir, drawings = small
    built = load_small(data_dir, cache_dir)  # builds cache_dir/omniglot28.npz from the zips
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted although the cache is built")

    monkeypatch.setattr(omniglot, "download_file", no_network)
    again = load_omniglot(cache_dir=cache_dir, strict=False, progress=False)
    assert again.characters == built.characters and torch.equal(again.images, built.images)
    assert again.background == built.background
    # A cache of another preprocessing version is not used: without the zips, a download is tried.
    with np.load(cache_dir / omniglot.CACHE_FILE) as cache:
        arrays = dict(cache)
    made = json.loads(str(arrays["fingerprint"]))
    arrays["fingerprint"] = np.array(json.dumps({**made, "version": omniglot.PREPROCESSING_VERSION + 1}))
    np.savez(cache_dir / omniglot.CACHE_FILE, **arrays)
    assert omniglot.load_cached_omniglot(cache_dir) is None
    with pytest.raises(AssertionError, match="a download was attempted"):
        load_omniglot(cache_dir=cache_dir, strict=False, progress=False)


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMLKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mamlkit" / "omniglot"
    monkeypatch.setenv("MAMLKIT_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine" / "omniglot"
    monkeypatch.delenv("MAMLKIT_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "mamlkit" / "omniglot"


# ----------------------------------------------------------------------------- splits


def published_names() -> list[str]:
    """The 1623 published character names, without needing the images."""
    return [
        f"{alphabet}/character{i:02d}"
        for alphabets in (BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS)
        for alphabet, count in alphabets.items()
        for i in range(1, count + 1)
    ]


def assert_partition(split: dict[str, list[int]], sizes: tuple[int, int, int], total: int) -> None:
    assert list(split) == ["train", "val", "test"]
    assert tuple(len(split[name]) for name in split) == sizes
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == list(range(total))  # disjoint and complete


def test_maml_split_sizes_seed_and_order_independence():
    names = sorted(published_names())
    split = split_characters(names, "maml", seed=1)
    assert_partition(split, (1100, 100, 423), 1623)
    assert split == split_characters(names, "maml", seed=1)
    assert split["train"] != split_characters(names, "maml", seed=2)["train"]

    # The split is of names, not of positions: a different input order gives the same names.
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    by_name = {
        key: {shuffled[i] for i in indices} for key, indices in split_characters(shuffled).items()
    }
    assert by_name == {key: {names[i] for i in indices} for key, indices in split.items()}


def test_vinyals_split_rules():
    names = published_names()
    split = split_characters(names, "vinyals")
    assert_partition(split, (1028, 172, 423), 1623)
    in_split = {key: {names[i] for i in indices} for key, indices in split.items()}
    assert "Gurmukhi/character41" in in_split["train"]
    assert "Gurmukhi/character42" in in_split["test"]
    assert {name.split("/")[0] for name in in_split["val"]} == {
        "Armenian",
        "Bengali",
        "Early_Aramaic",
        "Hebrew",
        "Mkhedruli_(Georgian)",
    }
    assert len({name.split("/")[0] for name in in_split["test"]}) == 13


def test_split_errors_list_what_is_allowed():
    names = published_names()
    with pytest.raises(
        ValueError, match=r"unknown split scheme 'lake'; allowed: 'maml', 'vinyals'"
    ):
        split_characters(names, "lake")
    with pytest.raises(ValueError, match=r"needs more than 1200, but 7 were given"):
        split_characters(names[:7], "maml")
    with pytest.raises(
        ValueError, match=r"'Klingon/character01' is not from one of the 50 published"
    ):
        split_characters(names + ["Klingon/character01"], "vinyals")
    with pytest.raises(ValueError, match=r"duplicate"):
        split_characters(names + names[:1])


# -------------------------------------------------------------------------- real data


def real_data_folder() -> Path | None:
    folder = os.environ.get("MAMLKIT_DATA")
    if folder and all((Path(folder) / name).is_file() for name in omniglot.OMNIGLOT_MD5):
        return Path(folder)
    return None


real_data = pytest.mark.skipif(
    real_data_folder() is None, reason="set MAMLKIT_DATA to a folder holding the Omniglot zips"
)


@pytest.fixture(scope="session")
def real():
    """The full data set, preprocessed into the persistent cache folder on first use."""
    return load_omniglot(progress=False)


@real_data
def test_real_data_has_every_character(real):
    assert real.images.shape == (1623, 20, 28, 28) and real.images.dtype == torch.uint8
    assert len(real.characters) == 1623 and real.characters == sorted(real.characters)
    assert sum(real.background) == 964
    mean = real.images.float().mean() / 255
    assert 0.02 < mean < 0.2, "strokes should be bright and cover a small part of the page"
    assert real.images[:, :, 0, 0].float().mean() < 5, "page corners should be dark background"


@real_data
def test_real_splits(real):
    assert_partition(split_characters(real.characters, "maml"), (1100, 100, 423), 1623)
    assert_partition(split_characters(real.characters, "vinyals"), (1028, 172, 423), 1623)


@real_data
def test_vinyals_split_matches_torchmeta_lists(real):
    split = split_characters(real.characters, "vinyals")
    for name, indices in split.items():
        path = real_data_folder() / f"torchmeta_vinyals_{name}.json"
        if not path.is_file():
            pytest.skip(f"{path} not found")
        listed = json.loads(path.read_text())
        expected = {
            (zip_name == "background", f"{alphabet}/{character}")
            for zip_name, alphabets in listed.items()
            for alphabet, characters in alphabets.items()
            for character in characters
        }
        assert {(real.background[i], real.characters[i]) for i in indices} == expected, name


@real_data
def test_real_cache_reloads_in_under_a_second(real):
    start = time.perf_counter()
    again = load_omniglot(progress=False)
    assert time.perf_counter() - start < 1.0
    assert torch.equal(again.images, real.images)
