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


def _serve_command(**env: str) -> str:
    """The `simgan serve` line `make serve` would run (make -n prints it without running anything)."""
    import os
    import subprocess

    root = Path(__file__).parent.parent
    clean = {k: v for k, v in os.environ.items() if k not in ("PORT", "SIMGAN_PORT")}
    printed = subprocess.run(
        ["make", "-n", "-W", ".venv/.installed", "serve"],
        cwd=root,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line.strip() for line in printed.splitlines() if "simgan serve" in line)


def test_make_serve_honours_port_and_simgan_port() -> None:
    assert _serve_command(PORT="8398").endswith("simgan serve --port 8398")
    # Without PORT, make passes no --port and simgan serve reads SIMGAN_PORT from its settings.
    assert _serve_command(SIMGAN_PORT="8399").endswith("simgan serve")
    assert _serve_command(PORT="8398", SIMGAN_PORT="8399").endswith("--port 8398")


def test_readme_config_table_matches_the_train_config() -> None:
    from core.config_docs import config_table

    assert config_table() in README, (
        "regenerate it: python -c 'from core.config_docs import config_table as t; print(t())'"
    )
