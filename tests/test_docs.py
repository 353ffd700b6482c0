"""The README and docs/*.md: every link leads somewhere, and the README stays a front door."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the headings of ``page``."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))  # not the code blocks
    return {re.sub(r"[^\w\- ]", "", m.lower()).replace(" ", "-")
            for m in re.findall(r"(?m)^#{1,6} (.+?)\s*$", text)}


def test_the_anchors_are_github_s():
    page = REPO / "docs" / "results.md"
    assert "maml-and-its-neighbours-omniglot-5-way-1-shot-notebook-05" in anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^(https?|mailto):", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(REPO) if REPO in file.parents else file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_the_course_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if "## Two commands" not in readme:
        pytest.skip("the student edition has a README of its own")
    assert len(readme.encode()) <= 12 * 1024, "the README should stay short: long sections go to docs/"
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"the README does not link docs/{page.name}"
