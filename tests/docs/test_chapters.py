"""The course (docs/0N-*.md) runs: every ```python block of a chapter, in order, in one namespace.

The chapters check themselves with ``assert`` (numbers asserted, not printed); this test runs
them in a temporary folder, with the pictures written there (not into docs/img), and then
checks that every picture a chapter shows was drawn by its code and is in docs/img.
"""
import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
_spec = importlib.util.spec_from_file_location("build_pictures", DOCS / "build_pictures.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

CHAPTERS = build.chapters()


def test_the_course_has_its_eight_chapters():
    assert [c.name.split("-")[0] for c in CHAPTERS] == [f"{i:02d}" for i in range(1, 9)]
    for chapter in CHAPTERS:
        assert build.code_blocks(chapter), f"{chapter.name} has no python block"
        assert build.pictures(chapter), f"{chapter.name} shows no picture"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_and_draws_its_pictures(chapter, tmp_path):
    out, work = tmp_path / "img", tmp_path / "work"
    work.mkdir()
    namespace = build.run_chapter(chapter, out, work)
    code = "\n".join(c for _, c in build.code_blocks(chapter))
    assert code.count("assert ") >= 2, f"{chapter.name}: a chapter checks its numbers with asserts"
    assert namespace["OUT"] == out                                   # the pictures went to tmp, not docs/img
    for picture in build.pictures(chapter):
        drawn = out / Path(picture).name
        assert drawn.is_file() and drawn.stat().st_size > 500, f"{chapter.name}: {picture} was not drawn"
        assert (DOCS / picture).is_file(), f"{picture} is not in docs/ (run python docs/build_pictures.py)"


def test_pictures_are_all_used_and_links_between_pages_resolve():
    shown = {p for c in CHAPTERS for p in build.pictures(c)}
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS:                                         # the README links every chapter
        assert f"](docs/{chapter.name})" in readme, f"README does not link {chapter.name}"
    produced = {f"img/{p.name}" for p in (DOCS / "img").glob("*") if p.suffix in (".png", ".svg")}
    assert produced >= shown and not (produced - shown), f"pictures nobody shows: {produced - shown}"
