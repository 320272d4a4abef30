"""Writes that a crash cannot tear: a reader sees the old file or the new one, never half of one.

Every file the product writes for another process to read (model cards, datasets, checkpoints,
job results, the ACTIVE pin) goes through here: write beside the target, fsync, rename, fsync the
directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` (not atomically) and fsync it: for files inside a staging directory."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `path` when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def rename_synced(staging: Path, target: Path) -> bool:
    """Move a filled staging directory to `target` once its contents are on disk.

    False when `target` already exists and is not empty (someone else took that name); the
    staging directory is then left for the caller to retry or remove.
    """
    fsync_dir(staging)
    try:
        os.rename(staging, target)
    except OSError:
        if target.exists():
            return False
        raise
    fsync_dir(target.parent)
    return True
