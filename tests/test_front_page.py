"""The README is the front page and the manual is a site (mkdocs.yml): the front page stays short
and keeps the two commands CI runs, its links to the manual resolve, and every page is in the
site's navigation (mkdocs build --strict, run by .ci/run, checks the links inside the site)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/winn-robust reproduce"
TESTS = ".venv/bin/python -m pytest -q"


def test_front_page_is_short_and_holds_both_commands() -> None:
    assert len(README.splitlines()) <= 250
    assert INSTALL in README and TESTS in README


def test_ci_runs_the_readme_commands_and_builds_the_manual_strictly() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/pip install --quiet -e '.[test]'" in ci  # the README's install, without reproduce
    assert f"\n{TESTS}\n" in ci
    assert re.search(r"\n\.venv/bin/mkdocs build --strict ", ci)


def test_readme_links_to_the_manual_resolve() -> None:
    links = re.findall(r"\]\(((?:docs|reports)/[^)#]*)\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing


def test_every_page_is_in_the_site_navigation() -> None:
    nav = set(re.findall(r":\s*([\w/-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages and pages <= nav
