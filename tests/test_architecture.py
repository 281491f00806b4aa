"""The package's floor plan (docs/architecture.md): layers only point down and no package has
an import cycle, as import-linter checks them from pyproject.toml."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(monkeypatch, capsys):
    cli = pytest.importorskip("importlinter.cli")
    monkeypatch.chdir(ROOT)
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out


def test_no_module_points_to_the_design_notes_outside_the_project():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "winn_robust").rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert not offenders, offenders
