"""The README is the product's manual: its first commands and settings table must be true."""

from __future__ import annotations

from pathlib import Path

from core.settings import settings_table

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    code_block = README.split("```")[1]
    assert [line for line in code_block.splitlines()[1:] if line.strip()] == ["make serve", "make test"]


def test_readme_settings_table_matches_the_settings_class() -> None:
    assert settings_table() in README, (
        "regenerate it: python -c 'from core.settings import settings_table as t; print(t())'"
    )


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
