"""The diagram script in assets/ runs and writes a small PNG and an SVG."""

import importlib.util
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ASSETS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_draw_maml_diagram_writes_png_and_svg(tmp_path):
    script = _load_script("draw_maml_diagram")
    png, svg = script.main(["--out-dir", str(tmp_path)])

    assert png == tmp_path / "maml_two_loops.png" and svg == tmp_path / "maml_two_loops.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < png.stat().st_size < 300_000, "the PNG should be a legible figure under 300 KB"
    assert "<svg" in svg.read_text(encoding="utf-8")[:1000]


def test_committed_diagram_exists():
    for suffix in ("png", "svg"):
        path = ASSETS / f"maml_two_loops.{suffix}"
        assert path.is_file(), f"missing {path.name}: run python assets/draw_maml_diagram.py"
