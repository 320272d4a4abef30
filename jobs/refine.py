"""The bulk refine job: refine a whole stored dataset with onnxruntime, in a `refine` queue worker.

The result is SIMGAN_HOME/results/<job id>.zip: every image refined, as a PNG under the same
file name it has in the dataset, plus the dataset's annotations.jsonl byte for byte (refining
changes pixels, never labels). No torch here.
"""

from __future__ import annotations

import os
import time
import zipfile
from typing import Any

import numpy as np
from rq import Retry

from core.datasets import DatasetStore
from core.images import encode_png
from core.layout import ANNOTATIONS_NAME
from core.settings import get_settings
from jobs import counters
from jobs.context import JobContext
from models import Registry
from models.noise import DEFAULT_SEED
from models.session import load_refiner
from models.tiling import refine_within_budget


def run_refine_job(dataset: str, model: str, seed: int = DEFAULT_SEED) -> dict[str, Any] | Retry:
    """Refine every image of stored dataset `dataset` with model version `model`; returns a summary.

    A stochastic model draws each image's noise from `seed` and the image (models/noise.py), so a
    retried or resumed job and POST /refine with the same seed give the same pixels."""
    settings = get_settings()
    with JobContext.current(settings) as job:
        store = DatasetStore(settings.data_path)
        images, _, names = store.load(dataset, mmap=True)  # (N, H, W, C) uint8, read as needed
        refiner = load_refiner(Registry(settings.models_path), model, settings)
        if images.shape[-1] != refiner.channels:
            raise ValueError(
                f"dataset {dataset} has {images.shape[-1]}-channel images but model {model} takes "
                f"{refiner.channels}-channel ones; pick a model trained on such images"
            )
        target = settings.result_path(job.id or "direct")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        total, batch, started = len(images), max(1, settings.refine_job_batch_size), time.perf_counter()
        # PNGs are compressed already: storing them uncompressed in the zip costs nothing and saves time.
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for start in range(0, total, batch):
                if job.should_stop():
                    archive.close()
                    partial.unlink(missing_ok=True)
                    return {"canceled": True, "images": start} if job.cancel_requested else job.retry_later()
                part = np.ascontiguousarray(images[start : start + batch])
                # (b, H, W, C), in model calls of at most max_call_pixels (tiles past it)
                refined = refine_within_budget(refiner, part, settings.max_call_pixels, [seed] * len(part))
                for name, pixels in zip(names[start : start + batch], refined, strict=True):
                    archive.writestr(name, encode_png(pixels))
                done = start + len(refined)
                elapsed = time.perf_counter() - started
                job.report(
                    {
                        "images_done": done,
                        "images_total": total,
                        "eta_seconds": elapsed / done * (total - done),
                    },
                    force=done == total,
                )
            # The store's annotations.jsonl ({"file": name, ...} per image): copied, not rewritten.
            archive.write(store.path(dataset) / ANNOTATIONS_NAME, ANNOTATIONS_NAME)
        os.replace(partial, target)
        if job.job is not None:
            counters.count_images(job.job.connection, refiner.version, total)
        return {"model_version": refiner.version, "images": total, "seed": seed, "result": str(target)}
