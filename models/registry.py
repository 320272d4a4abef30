"""A directory of published refiners, shared by every process (a volume in compose).

Layout under the root:

    v1/model.onnx, v1/card.json     one directory per version, visible only when complete
    v1/README.md                    the card for people (Hugging Face model-card layout)
    ACTIVE                          optional pin: the version the service serves
    .staging-*/                     publishes in progress (ignored by readers)

Publishing writes into a staging directory (fsync'd, card last) and renames it to the
next free `v<N>`. A rename either happens whole or not at all, so a reader never sees a
half-written model, and a crash mid-publish leaves only a staging directory that readers
skip. Two publishers racing for the same number: the loser's rename fails and it takes
the next number.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.files import atomic_write_bytes, rename_synced, sha256_file, write_synced
from models.card import ModelCard
from models.card_text import card_markdown

ONNX_NAME = "model.onnx"
CARD_NAME = "card.json"
README_NAME = "README.md"
"""The card for people (models.card_text), beside card.json: rewritten when an evaluation is recorded."""
ACTIVE_NAME = "ACTIVE"
UNLOADABLE_NAME = "unloadable.json"
"""Written by a service that could not load a version: {"reason", "onnx_mtime_ns", "onnx_size"}. It
holds while the ONNX file is the one that failed; nothing resolves `active` to such a version."""
METRICS_NAME = "metrics.json"
"""Evaluations recorded after publication, beside the immutable card: {"evaluations": [record, ...]}."""
BUNDLED_DIR = Path(__file__).parent / "bundled"
"""The default refiner shipped in the repository; seeded into an empty registry."""

_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(Exception):
    """The registry cannot do what was asked (bad file, bad version name)."""


class ModelNotFound(RegistryError):
    """No published model answers to that version."""


def version_number(version: str) -> int:
    match = _VERSION.match(version)
    if not match:
        raise RegistryError(f"'{version}' is not a model version; versions look like 'v3' (or use 'latest')")
    return int(match.group(1))


class Registry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------- reading
    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            p.name
            for p in self.root.iterdir()
            if _VERSION.match(p.name) and (p / CARD_NAME).is_file() and (p / ONNX_NAME).is_file()
        ]
        return sorted(found, key=version_number)

    def list(self) -> list[ModelCard]:
        return [self.get(v) for v in self.versions()]

    def latest(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def pinned(self) -> str | None:
        """The version pinned by `activate`, or None when the service follows the newest."""
        path = self.root / ACTIVE_NAME
        if not path.is_file():
            return None
        text = path.read_text().strip()
        return text or None

    def unloadable(self, version: str) -> str | None:
        """Why a service could not load `version`, while its ONNX file is the one that failed; else None."""
        try:
            record = json.loads((self.root / version / UNLOADABLE_NAME).read_text())
            stat = (self.root / version / ONNX_NAME).stat()
        except (OSError, ValueError):
            return None
        if record.get("onnx_mtime_ns") != stat.st_mtime_ns or record.get("onnx_size") != stat.st_size:
            return None  # the file was replaced since: worth another try
        return str(record.get("reason") or "it could not be loaded")

    def mark_unloadable(self, version: str, reason: str) -> None:
        """Record that `version` cannot serve (best effort: a read-only registry only logs it)."""
        stat = (self.root / version / ONNX_NAME).stat()
        record = {"reason": reason, "onnx_mtime_ns": stat.st_mtime_ns, "onnx_size": stat.st_size}
        atomic_write_bytes(self.root / version / UNLOADABLE_NAME, json.dumps(record).encode())

    def clear_unloadable(self, version: str) -> None:
        (self.root / version / UNLOADABLE_NAME).unlink(missing_ok=True)

    def newest_loadable(self) -> str | None:
        """The newest version not marked unloadable."""
        return next((v for v in reversed(self.versions()) if self.unloadable(v) is None), None)

    def newest_self_activating(self) -> str | None:
        """The newest loadable version whose card lets the service switch to it by itself."""
        for version in reversed(self.versions()):
            if self.unloadable(version) is not None:
                continue
            try:
                if self.get(version).auto_activate:
                    return version
            except (OSError, ValueError, RegistryError):  # an unreadable card never activates itself
                continue
        return None

    def resolve(self, version: str) -> str:
        """Turn `latest`, `active` or `vN` into a published version, or raise ModelNotFound.

        `active` is the pinned version (ACTIVE) if there is one, else the newest that activates itself;
        a registry none of whose models does serves its newest, so a published model is never idle.
        Versions marked unloadable are never picked that way (only by naming them or pinning).
        """
        if version == "active" and self.pinned() is None:
            version = self.newest_self_activating() or self.newest_loadable() or "latest"
        if version == "latest":
            latest = self.latest()
            if latest is None:
                raise ModelNotFound("no model is published yet; train one (POST /train-jobs) or publish one")
            return latest
        if version == "active":
            version = self.pinned() or ""
        version_number(version)
        if not (self.root / version / CARD_NAME).is_file():
            known = ", ".join(self.versions()) or "none"
            raise ModelNotFound(f"model version '{version}' does not exist (published: {known})")
        return version

    def get(self, version: str) -> ModelCard:
        """The card; evaluations recorded later (`add_metrics`) show under metrics["evaluations"]."""
        resolved = self.resolve(version)
        card = ModelCard.from_json((self.root / resolved / CARD_NAME).read_text())
        recorded = self.root / resolved / METRICS_NAME
        if recorded.is_file():
            evaluations = json.loads(recorded.read_text())["evaluations"]
            card = replace(
                card, metrics={**card.metrics, "latest": evaluations[-1], "evaluations": evaluations}
            )
        return card

    def add_metrics(self, version: str, record: dict[str, Any]) -> ModelCard:
        """Append an evaluation to `version`'s metrics.json; the card and the ONNX file stay untouched.

        The card is immutable (its sha256 pins the model), so evaluations made after publishing live
        beside it. A lock keeps two evaluations that finish at once from losing one.
        """
        resolved = self.resolve(version)
        path = self.root / resolved / METRICS_NAME
        with (self.root / resolved / ".metrics.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            evaluations = json.loads(path.read_text())["evaluations"] if path.is_file() else []
            evaluations.append({"recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **record})
            atomic_write_bytes(
                path, json.dumps({"evaluations": evaluations}, indent=2, allow_nan=False).encode()
            )
            card = self.get(resolved)
            atomic_write_bytes(self.root / resolved / README_NAME, card_markdown(card).encode())
        return card

    def onnx_path(self, version: str) -> Path:
        return self.root / self.resolve(version) / ONNX_NAME

    def verify(self, version: str) -> ModelCard:
        """The card, after checking the ONNX file against the card's sha256."""
        card = self.get(version)
        actual = sha256_file(self.onnx_path(card.version))
        if actual != card.onnx_sha256:
            raise RegistryError(
                f"model {card.version}: ONNX file sha256 {actual[:12]}... does not match its card "
                f"({card.onnx_sha256[:12]}...); the file is corrupt or was replaced"
            )
        return card

    # ----------------------------------------------------------------- writing
    def publish(self, onnx_file: Path | str, card: ModelCard) -> ModelCard:
        """Copy `onnx_file` in with `card`; returns the card with its assigned version."""
        onnx_file = Path(onnx_file)
        self.root.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(onnx_file)
        if card.onnx_sha256 and card.onnx_sha256 != digest:
            raise RegistryError("the card's onnx_sha256 does not match the file being published")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            shutil.copyfile(onnx_file, staging / ONNX_NAME)
            with (staging / ONNX_NAME).open("rb") as f:
                os.fsync(f.fileno())
            latest = self.latest()
            number = (version_number(latest) if latest else 0) + 1
            while True:
                version = f"v{number}"
                final = replace(
                    card,
                    version=version,
                    onnx_sha256=digest,
                    created_at=card.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
                )
                write_synced(staging / README_NAME, card_markdown(final).encode())
                write_synced(staging / CARD_NAME, final.to_json().encode())  # last: the version is complete
                if not rename_synced(staging, self.root / version):  # someone else took this number
                    number += 1
                    continue
                return final
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def activate(self, version: str | None) -> str | None:
        """Pin the service to `version` (`latest` or None: follow the newest again)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / ACTIVE_NAME
        if version is None or version == "latest":
            target.unlink(missing_ok=True)
            return None
        resolved = self.resolve(version)
        atomic_write_bytes(target, resolved.encode())
        return resolved

    def seed_bundled(self, bundled_dir: Path = BUNDLED_DIR) -> ModelCard | None:
        """Publish the bundled default refiner when the registry is empty, so /refine works at once."""
        if self.versions():
            return None
        onnx_file = bundled_dir / ONNX_NAME
        card_file = bundled_dir / CARD_NAME
        if not (onnx_file.is_file() and card_file.is_file()):
            return None
        card = ModelCard.from_json(card_file.read_text())
        # The default serves whatever its verdict says (the card keeps it): an empty registry must
        # serve something, and a later model that did not improve must not push it aside.
        seeded = replace(card, version="", notes=card.notes or "bundled default", auto_activate=True)
        return self.publish(onnx_file, seeded)
