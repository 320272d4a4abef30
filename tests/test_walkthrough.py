"""The README's walkthrough, run as it stands against a live `simgan serve` (with smaller counts and
configs, each substitution checked, so that it takes about a minute instead of twenty)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.redis_server import free_port
from tests.factories import serve_env, start_serve, wait_until_up

README = (Path(__file__).parent.parent / "README.md").read_text()

TINY = (
    '{\\"steps\\": 4, \\"batch_size\\": 4, \\"pretrain_refiner_steps\\": 1, '
    '\\"pretrain_discriminator_steps\\": 1, \\"refiner_channels\\": 4, \\"refiner_blocks\\": 1, '
    '\\"checkpoint_every\\": 100'
)
SMALLER = {
    '"count": 2000': '"count": 48',
    "--count 200 ": "--count 20 ",
    (
        '{\\"steps\\": 100, \\"batch_size\\": 16, \\"pretrain_refiner_steps\\": 20, '
        '\\"pretrain_discriminator_steps\\": 10, \\"refiner_channels\\": 16, \\"checkpoint_every\\": 50}'
    ): TINY + "}",
    '{\\"evaluate\\": true}': TINY + ', \\"evaluate\\": true}',
    "sleep 5": "sleep 1",
}
"""README text -> what the test runs instead; every key must be in the walkthrough."""


def walkthrough() -> str:
    section = README.split("## Walkthrough with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
@pytest.mark.timeout(540)  # two train jobs and an evaluation through real workers: about a minute alone
@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="needs curl and jq")
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = walkthrough()
    assert script.startswith("API=localhost:8000")
    port = free_port()
    script = script.replace("API=localhost:8000", f"API=127.0.0.1:{port}", 1)
    for text, smaller in SMALLER.items():
        assert text in script, f"the walkthrough no longer says {text!r}: update SMALLER"
        script = script.replace(text, smaller)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the walkthrough calls .venv/bin/...
    env = serve_env(tmp_path / "home", SIMGAN_EVALUATION_TASK_STEPS="5")
    log = tmp_path / "serve.log"
    serve = start_serve(env, port, log)
    out, trace = tmp_path / "walkthrough.out", tmp_path / "walkthrough.trace"
    try:
        wait_until_up(serve, f"http://127.0.0.1:{port}", children=4)
        with out.open("w") as stdout, trace.open("w") as stderr:
            try:
                code = subprocess.run(
                    ["bash", "-x", "-euo", "pipefail", "-c", script],
                    cwd=work,
                    env={**os.environ, **env},
                    stdout=stdout,
                    stderr=stderr,
                    timeout=420,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
    finally:
        serve.terminate()
        serve.wait(60)
    printed = out.read_text()
    assert code == 0, f"{printed}\n{trace.read_text()[-4000:]}\n{log.read_text()[-4000:]}"
    for made in (
        "eyes.zip",
        "samples.png",
        "loss_curves.png",
        "evaluation.png",
        "refined.png",
        "refined.zip",
    ):
        assert (work / made).stat().st_size > 0, made
    assert "x-model-version" in printed.lower()
    assert '"gap_closed"' in printed
