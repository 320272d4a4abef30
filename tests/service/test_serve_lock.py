"""One `simgan serve` per SIMGAN_HOME: a second one on the same home exits at once, before starting
anything (no second Redis on the same append-only file, no extra workers), naming the PID that holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.redis_server import free_port
from service.supervisor import HomeInUse, descendants, lock_home
from tests.factories import kill_serve, serve_env, start_serve, wait_until_up


@pytest.fixture
def serve_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "serve.log"
    yield path
    print(path.read_text() if path.exists() else "")


@pytest.mark.slow
def test_a_second_serve_on_the_same_home_exits_at_once_naming_the_first(
    tmp_path: Path, serve_log: Path
) -> None:
    home = tmp_path / "home"
    first_port = free_port()
    first = start_serve(serve_env(home), first_port, serve_log)
    try:
        wait_until_up(first, f"http://127.0.0.1:{first_port}", children=4)
        family = set(descendants(first.pid))
        second = subprocess.run(
            [sys.executable, "-m", "simgan.cli", "serve", "--port", str(free_port())],
            env=serve_env(home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        after = set(descendants(first.pid))
        still_up = first.poll() is None
    finally:
        kill_serve(first)

    assert second.returncode == 1
    assert f"is in use by another simgan serve (pid {first.pid})" in second.stderr
    assert "http://" not in second.stdout  # it started nothing, not even its banner
    assert still_up and after == family  # the first one was not disturbed


def test_the_lock_is_free_again_once_its_holder_is_gone(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from service.supervisor import lock_home; "
            "lock_home(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(HomeInUse, match=f"pid {holder.pid}"):
            lock_home(tmp_path)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    os.close(lock_home(tmp_path))  # killed -9: the kernel released it, the stale file does not block
