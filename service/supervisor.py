"""The processes of `simgan serve`, the embedded default: a private Redis, a worker per queue, the API.

Every child runs in its own session (process group), so a Ctrl-C in the terminal reaches only
this supervisor, which then stops them in order: the API first (no new jobs), then the workers
(SIGTERM: a running job stops at its next step, a training job writes its checkpoint, and the
job is requeued in Redis), then Redis (its append-only file keeps the queue for the next start).
Whatever has not exited after `shutdown_grace_seconds` is killed, with all its descendants.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from core.layout import REDIS_DIR, SERVE_LOCK_NAME
from core.settings import Settings
from jobs.queue import QUEUES, public_url
from service.redis_server import EmbeddedRedis, pid_alive, stable_port, write_url

log = logging.getLogger(__name__)


HTTP_PROTOCOL = "service.api.timeouts:TimedH11Protocol"
REDIS_RESTARTS = 5
"""Tries in a row to start a private Redis that died before `simgan serve` gives up and stops."""
RESTART_DELAY_SECONDS = 2.0
"""Pause before a worker that died is started again (it may be dying for a reason that persists)."""


def _stat(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (state, ppid, ..., starttime at [19]); Linux only."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot): tells a process from a later one reusing its pid."""
    fields = _stat(pid)
    return fields[19] if fields else None


def children_of(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (Linux); [] where /proc is missing."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: its children, their children, and so on."""
    result, frontier = [], [pid]
    while frontier:
        below = [child for parent in frontier for child in children_of(parent)]
        result += below
        frontier = below
    return result


class HomeInUse(RuntimeError):
    """Another `simgan serve` holds this SIMGAN_HOME; the message names its PID."""


def lock_home(home: Path) -> int:
    """Hold SIMGAN_HOME/serve.lock for this process's life (the returned descriptor is never closed).

    Two serves on one home would run two Redis servers on one append-only file and twice the
    workers; the second one stops here, before it starts anything. flock is released by the kernel
    when the holder dies, however it dies, so a stale file never blocks a new start.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / SERVE_LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise HomeInUse(
            f"SIMGAN_HOME {home} is in use by another simgan serve (pid {holder}); stop it first, or give "
            "this one its own SIMGAN_HOME"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.set_inheritable(fd, False)
    return fd


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    family: dict[int, str | None] = field(default_factory=dict)  # pid -> start time

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env=env, start_new_session=True)
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def signal(self, signum: int) -> None:
        if self.process is None:
            return
        # Job processes live in their own process group: remember them to kill them by pid.
        self.family.update({pid: start_time(pid) for pid in descendants(self.process.pid)})
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the child's group and every descendant seen, including job processes in their own group."""
        self.signal(signal.SIGKILL)
        for pid, started in self.family.items():
            if pid_alive(pid) and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()


def api_environment(settings: Settings) -> dict[str, str]:
    """What the API processes get on top of this environment: with several of them and onnxruntime's
    default threads (one per core each), the cores divided among them, so that they do not all
    fight over every core at once."""
    if settings.api_processes > 1 and settings.intra_op_threads == 0:
        share = max(1, (os.cpu_count() or 1) // settings.api_processes)
        return {"SIMGAN_INTRA_OP_THREADS": str(share)}
    return {}


def api_argv(settings: Settings, host: str, port: int) -> list[str]:
    """uvicorn serving the app factory with `api_processes` processes on one port."""
    argv = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
    argv += ["--host", host, "--port", str(port), "--log-level", settings.log_level.lower()]
    argv += ["--http", HTTP_PROTOCOL]  # closes connections whose headers take too long
    if settings.api_processes > 1:
        argv += ["--workers", str(settings.api_processes)]
    return argv


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.redis: EmbeddedRedis | None = None
        python = sys.executable
        self.api = Child("api", api_argv(settings, host, port))
        self.workers = [
            Child(f"{queue} worker", [python, "-m", "simgan.cli", "worker", "--queues", queue])
            for queue in QUEUES
        ]
        self._stop_requested = False
        self.redis_restarts = 0

    @property
    def children(self) -> list[Child]:
        return [self.api, *self.workers]

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested:
            log.warning(
                "stopping already; killing what is left in %.0f s", self.settings.shutdown_grace_seconds
            )
        self._stop_requested = True

    def start(self) -> None:
        env = dict(os.environ)
        if not self.settings.redis_url:
            directory = self.settings.home / REDIS_DIR
            port = stable_port(directory, self.settings.redis_port)
            self.redis = EmbeddedRedis(directory, port=port).start()
            write_url(directory, self.redis.url)
            env["REDIS_URL"] = self.redis.url
            log.info(
                "started a private Redis at %s (data in %s)", public_url(self.redis.url), self.redis.directory
            )
        self.api.start({**env, **api_environment(self.settings)})
        for child in self.workers:
            child.start(env)
        self._env = env

    def run(self) -> int:
        """Start everything, watch it until SIGINT/SIGTERM, then stop everything. Returns an exit code."""
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            self.start()
            code = self._watch()
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return code

    def _watch(self) -> int:
        while not self._stop_requested:
            time.sleep(0.2)
            if (
                self.redis is not None
                and self.redis.process is not None
                and self.redis.process.poll() is not None
                and not self._restart_redis()
            ):
                return 1
            if not self.api.running and not self._stop_requested:
                assert self.api.process is not None
                log.error("the API exited with code %s (is the port in use?)", self.api.process.returncode)
                return 1
            for worker in self.workers:
                if not worker.running and not self._stop_requested:
                    assert worker.process is not None
                    log.warning(
                        "%s exited with code %s; restarting it", worker.name, worker.process.returncode
                    )
                    time.sleep(RESTART_DELAY_SECONDS)
                    worker.restarts += 1
                    worker.start(self._env)
        return 0

    def _restart_redis(self) -> bool:
        """Start the private Redis again on its port, directory and password: it replays its append-only
        file, so queued jobs and job records come back; the API and the workers reconnect by themselves
        (/refine never needed it). False after REDIS_RESTARTS failed tries in a row."""
        assert self.redis is not None and self.redis.process is not None
        log.error(
            "the private Redis exited (%s); restarting it (log: %s)",
            self.redis.process.returncode,
            self.redis.directory / "redis.log",
        )
        for attempt in range(1, REDIS_RESTARTS + 1):
            if self._stop_requested:
                return True
            try:
                self.redis.start()
            except RuntimeError as exc:
                log.error(
                    "restarting the private Redis failed (try %d of %d): %s", attempt, REDIS_RESTARTS, exc
                )
                time.sleep(RESTART_DELAY_SECONDS)
                continue
            self.redis_restarts += 1
            log.warning("the private Redis is back (pid %d)", self.redis.process.pid)
            return True
        return False

    def stop(self) -> None:
        grace = self.settings.shutdown_grace_seconds
        self._stop_group([self.api], signal.SIGTERM, grace)
        # Warm shutdown: each worker tells its job to stop at the next step (checkpoint, requeue).
        self._stop_group(self.workers, signal.SIGTERM, grace)
        # Cold shutdown of any that are still busy: rq kills the job process and exits.
        self._stop_group(self.workers, signal.SIGTERM, 3.0)
        for child in self.children:
            child.kill()
        if self.redis is not None:
            self.redis.stop()  # its URL file stays: the next start takes the same port if it can
            log.info("stopped the private Redis")

    @staticmethod
    def _stop_group(children: list[Child], signum: int, timeout: float) -> None:
        for child in children:
            child.signal(signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(child.running for child in children):
            time.sleep(0.1)
