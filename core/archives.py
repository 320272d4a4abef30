"""Reading uploaded dataset files safely: .zip, .tar, .tar.gz/.tgz, .npz and .h5.

An upload is untrusted input. Nothing is extracted to disk: archive members are read into
memory one at a time, and every read is capped by what is left of the unpack budget, so a
header that lies about a member's size cannot make us unpack more than the limit. Refused
before any member data is read: too many members, declared sizes over the budget or over the
compression-ratio guard, absolute or `..` paths, links, devices, encrypted members.

Array files (.npz, .h5) are read by core.arrays; the limits themselves live in core.limits.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from core.errors import ClientError
from core.limits import ByteBudget, Limits, upload_size

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_ENTRY_BYTES = 512
"""Central-directory bytes allowed per permitted zip member (46 fixed, then name and extras)."""


def safe_name(name: str) -> str:
    """A member path as a clean relative POSIX path; refuses absolute paths and `..`."""
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        raise ClientError(
            400, f"archive member '{name}' has an absolute path; archive paths must be relative"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ClientError(400, f"archive member '{name}' climbs out of the archive ('..'); remove it")
    if "\x00" in path:
        raise ClientError(400, f"archive member {name!r} has a NUL byte in its name")
    return "/".join(parts)


# ---------------------------------------------------------------- archives (.zip, .tar*)
Member = tuple[str, bytes]
"""(clean path inside the archive, its bytes)"""


def iter_members(
    fmt: str, fileobj: IO[bytes], limits: Limits, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    """Regular-file members whose clean path `wanted` accepts; other paths go to `skipped`."""
    budget = ByteBudget(limits, upload_size(fileobj, limits))
    if fmt == "zip":
        yield from _zip_members(fileobj, limits, budget, wanted, skipped)
    else:
        yield from _tar_members(fileobj, limits, budget, wanted, skipped)


def too_many(limits: Limits) -> ClientError:
    return ClientError(
        413,
        f"the archive holds more than {limits.max_members} files (SIMGAN_MAX_ARCHIVE_MEMBERS); "
        "split the dataset or raise the limit",
    )


def open_zip(fileobj: IO[bytes], what: str, limits: Limits) -> zipfile.ZipFile:
    # zipfile reads the whole central directory into memory on open: size it up first. Its
    # byte size matters as well as its entry count, because zipfile reads it by size.
    directory = _zip_directory(fileobj)
    if directory is not None:
        entries, size = directory
        if entries > limits.max_members or size > limits.max_members * _MAX_ENTRY_BYTES:
            raise too_many(limits)
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise ClientError(400, f"the upload is not a readable {what} ({error})") from error


def _zip_directory(fileobj: IO[bytes]) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory, from the end record (zip64 too); None if absent."""
    size = fileobj.seek(0, io.SEEK_END)
    tail_size = min(size, (1 << 16) + 22)  # the end record closes the file, after a comment <= 64 KiB
    fileobj.seek(size - tail_size)
    tail = fileobj.read(tail_size)
    fileobj.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    entries, directory_size = struct.unpack_from("<HI", tail, at + 10)
    if entries != 0xFFFF and directory_size != 0xFFFFFFFF:
        return entries, directory_size
    locator = tail[at - 20 : at] if at >= 20 else b""
    if not locator.startswith(b"PK\x06\x07"):
        return None
    fileobj.seek(struct.unpack_from("<Q", locator, 8)[0])
    record = fileobj.read(56)
    fileobj.seek(0)
    if len(record) < 56 or not record.startswith(b"PK\x06\x06"):
        return None
    entries64, directory_size64 = struct.unpack_from("<QQ", record, 32)
    return entries64, directory_size64


def _zip_members(
    fileobj: IO[bytes], limits: Limits, budget: ByteBudget, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    with open_zip(fileobj, "zip archive", limits) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise too_many(limits)
        budget.declare(sum(info.file_size for info in infos))
        seen: set[str] = set()
        for info in infos:
            name = safe_name(info.filename)
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISDIR(mode):
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: written without a file type
                kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                raise ClientError(400, f"archive member '{name}' is {kind}; only regular files are accepted")
            if info.flag_bits & 0x1:
                raise ClientError(400, f"archive member '{name}' is encrypted; upload it unencrypted")
            if name in seen:
                raise ClientError(400, f"archive member '{name}' appears twice; keep one")
            seen.add(name)
            if not wanted(name):
                skipped.append(name)
                continue
            try:
                with archive.open(info) as stream:
                    data = budget.read(stream)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as error:
                raise ClientError(400, f"archive member '{name}' is corrupt ({error})") from error
            yield name, data


def _tar_members(
    fileobj: IO[bytes], limits: Limits, budget: ByteBudget, wanted: Callable[[str], bool], skipped: list[str]
) -> Iterator[Member]:
    # Stream mode ("r|*"): one forward pass over the (possibly gzip'd) tar, never seeking back.
    try:
        archive = tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ClientError(400, f"the upload is not a readable tar archive ({error})") from error
    with archive:
        count = 0
        seen: set[str] = set()
        members = iter(archive)
        while True:
            try:
                member = next(members, None)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise ClientError(400, f"the tar archive is corrupt after {count} files ({error})") from error
            if member is None:
                return
            count += 1
            if count > limits.max_members:
                raise too_many(limits)
            name = safe_name(member.name)
            if member.issym() or member.islnk():
                raise ClientError(400, f"archive member '{name}' is a link; only regular files are accepted")
            if member.isdir():
                continue
            if not member.isfile():
                raise ClientError(
                    400, f"archive member '{name}' is a device or pipe; only regular files are accepted"
                )
            if name in seen:
                raise ClientError(400, f"archive member '{name}' appears twice; keep one")
            seen.add(name)
            # Skipped members are still decompressed on the way past, so they count too.
            budget.declare(budget.used + member.size)
            if not wanted(name):
                budget.spend(member.size)
                skipped.append(name)
                continue
            stream = archive.extractfile(member)
            if stream is None:  # pragma: no cover - isfile() members always have data
                continue
            try:
                data = budget.read(stream, member.size)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise ClientError(400, f"archive member '{name}' is corrupt ({error})") from error
            yield name, data


# ---------------------------------------------------------------- array files


def clean_name(name: str) -> str | None:
    """`safe_name(name)`, or None where it would refuse the name."""
    try:
        return safe_name(name)
    except ClientError:
        return None
