"""Hot reload: keep the served refiner in step with the registry, without a restart.

A background thread asks the registry every `reload_poll_seconds`
which version is active. When that is not the one loaded, it loads it off the event loop
(sha256 check, onnxruntime session, warm-up) and swaps the reference in one assignment:
requests already holding the old RefinerSession finish on it. A model that fails any step is
logged once and skipped; the old one keeps serving. Versions a request names explicitly
are loaded on demand and kept in a small LRU cache.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from pathlib import Path

from core.settings import Settings
from models.registry import ModelNotFound, Registry, RegistryError, version_number
from models.session import RefinerError, RefinerSession, load_refiner
from service.metrics import Metrics

log = logging.getLogger(__name__)

Fingerprint = tuple[str, int, int]
"""(version, ONNX file mtime_ns, size): a failed model is retried only if its file changes."""


class NotReady(Exception):
    """No refiner is loaded yet; the message says why."""


class ModelLoadError(Exception):
    """A published model cannot serve (corrupt file, sha256 mismatch, failed warm-up)."""


class Reloader:
    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self._current: RefinerSession | None = None
        self._failed: dict[Fingerprint, str] = {}
        self._cache: OrderedDict[str, RefinerSession] = OrderedDict()
        self._lock = threading.RLock()  # one load at a time; the swap itself needs no lock
        self._cache_lock = threading.Lock()  # held only for dict operations, never during a load
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waiting_for = "no model checked yet"

    @property
    def current(self) -> RefinerSession | None:
        """The refiner serving requests for the active version (None until one loads)."""
        return self._current

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_forever, name="simgan-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the thread must outlive any surprise; the old model keeps serving
                log.exception("checking the model registry failed")
            self._wake.wait(self.settings.reload_poll_seconds)
            self._wake.clear()

    # ---------------------------------------------------------------- swaps
    def check(self) -> RefinerSession | None:
        """Load and swap in the registry's active version if it is not the one serving (blocking)."""
        with self._lock:
            try:
                wanted = self.registry.resolve("active")
            except RegistryError as exc:
                self.waiting_for = str(exc)
                return self._current
            if self._current is not None and self._current.version == wanted:
                return self._current
            try:
                refiner = self._load(wanted)
            except ModelLoadError as exc:
                self.waiting_for = str(exc)
                fallback = self._newest_working(older_than=wanted) if self._current is None else None
                if fallback is None:
                    return self._current
                log.warning(
                    "serving %s, the newest model older than %s that can serve", fallback.version, wanted
                )
                refiner = fallback
            self._swap(refiner)
            return refiner

    def _newest_working(self, older_than: str) -> RefinerSession | None:
        """With nothing serving (a fresh start), an older model beats none: try them newest first."""
        for version in reversed(self.registry.versions()):
            if version_number(version) >= version_number(older_than):
                continue
            try:
                return self._load(version)
            except ModelLoadError:
                continue
        return None

    def activate(self, version: str) -> RefinerSession | None:
        """Pin `version` (`latest`: follow the newest) after loading it; a model that fails is not pinned."""
        with self._lock:
            if version == "latest":
                self.registry.activate(None)
                return self.check()
            resolved = self.registry.resolve(version)
            refiner = self._loaded(resolved) or self._load(resolved)
            self.registry.activate(resolved)
            self._swap(refiner)
            return refiner

    def _swap(self, refiner: RefinerSession) -> None:
        old = self._current
        self._current = refiner  # one reference assignment: requests see the old or the new, whole
        with self._cache_lock:
            self._cache.pop(refiner.version, None)
        if old is not None:
            self._remember(old)
        parity = refiner.parity
        self.metrics.set_active_model(
            refiner.version,
            refiner.provider,
            refiner.precision,
            None if parity is None else (parity.max_grey_levels, parity.mean_grey_levels),
        )
        log.info("serving model %s on %s", refiner.version, refiner.describe())

    # ------------------------------------------------------------- on demand
    async def get(self, version: str | None) -> RefinerSession:
        """The refiner for a request: the active one by default, else `version` (loaded on demand)."""
        if version in (None, "", "active"):
            current = self._current
            if current is None:
                raise NotReady(f"no model is loaded yet: {self.waiting_for}")
            return current
        assert version is not None
        resolved = self.registry.resolve(version)  # ModelNotFound -> 404
        found = self._loaded(resolved)
        if found is not None:
            return found
        return await asyncio.to_thread(self._load_cached, resolved)

    def _loaded(self, version: str) -> RefinerSession | None:
        current = self._current
        if current is not None and current.version == version:
            return current
        with self._cache_lock:
            found = self._cache.get(version)
            if found is not None:
                self._cache.move_to_end(version)
            return found

    def _load_cached(self, version: str) -> RefinerSession:
        with self._lock:
            found = self._loaded(version)
            if found is None:
                found = self._load(version)
                self._remember(found)
            return found

    def _remember(self, refiner: RefinerSession) -> None:
        with self._cache_lock:
            self._cache[refiner.version] = refiner
            self._cache.move_to_end(refiner.version)
            while len(self._cache) > max(0, self.settings.model_cache_size):
                self._cache.popitem(last=False)

    # ------------------------------------------------------------------ load
    def _fingerprint(self, version: str) -> Fingerprint:
        try:
            stat = Path(self.registry.onnx_path(version)).stat()
        except (OSError, RegistryError):
            return (version, 0, 0)
        return (version, stat.st_mtime_ns, stat.st_size)

    def _load(self, version: str) -> RefinerSession:
        """load_refiner, turning every failure into ModelLoadError, logged once per model file."""
        fingerprint = self._fingerprint(version)
        if fingerprint in self._failed:
            raise ModelLoadError(self._failed[fingerprint])
        try:
            refiner = load_refiner(self.registry, version, self.settings)
        except ModelNotFound:
            raise
        except (RegistryError, RefinerError) as exc:
            message = f"model {version} cannot serve: {exc}"
        except Exception as exc:  # anything else a broken model can make onnxruntime raise
            message = f"model {version} cannot serve: {type(exc).__name__}: {exc}"
        else:
            if self.registry.unloadable(version) is not None:
                self.registry.clear_unloadable(version)
            return refiner
        # People read this in /readyz and GET /models: the registry's place on this disk is not theirs.
        for root in {str(self.registry.root.resolve()), str(self.registry.root.absolute())}:
            message = message.replace(root, "models")
        self._failed[fingerprint] = message
        serving = self._current.version if self._current else "none"
        log.error("%s; skipping it (still serving: %s)", message, serving)
        try:  # so that `active` (here, in GET /models, in every worker) never names it again
            self.registry.mark_unloadable(version, message)
        except OSError as exc:
            log.warning("could not mark %s unloadable in the registry: %s", version, exc)
        raise ModelLoadError(message)

    @property
    def skipped(self) -> list[str]:
        """Why each version this service could not load was skipped ("model v3 cannot serve: ...")."""
        return [self._failed[key] for key in sorted(self._failed, key=lambda k: version_number(k[0]))]
