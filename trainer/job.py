"""The training job: what a `train` queue worker runs for POST /train-jobs.

Enqueued by its dotted path (`trainer.job.run_train_job`), so the API never imports torch. Each
job trains in SIMGAN_HOME/jobs/<job id>/ and resumes from the checkpoint.pt it finds there: a
job whose worker died or was stopped is requeued by rq and simply carries on from its last
checkpoint on whichever worker picks it up.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rq import Retry

from models import Registry
from service.config import Settings, get_settings
from service.datasets import DatasetStore
from service.worker import JobContext
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig
from trainer.training import Progress, SimGAN, train

log = logging.getLogger(__name__)


def job_workdir(settings: Settings, job_id: str) -> Path:
    """Where a training job keeps its checkpoint: SIMGAN_HOME/jobs/<job id>/."""
    return settings.home / "jobs" / job_id


def _dataset_entry(store: DatasetStore, dataset_id: str) -> dict[str, Any]:
    """What the model card records about a training dataset (id, kind, shape, sha256)."""
    info = store.get(dataset_id)
    data = info.model_dump() if hasattr(info, "model_dump") else asdict(info)
    keep = ("id", "kind", "count", "height", "width", "channels", "sha256", "source")
    return {key: data[key] for key in keep if key in data}


def run_train_job(
    synthetic_dataset: str, real_dataset: str, config: dict[str, Any]
) -> dict[str, Any] | Retry:
    """Train on two stored datasets and publish the refiner; returns {model_version, metrics, ...}.

    Returns {"canceled": True, ...} when the user canceled it (a checkpoint is left behind), and a
    `Retry` when its worker is going away, so that another worker resumes it.
    """
    settings = get_settings()
    with JobContext.current(settings) as job:
        if job.cancel_flag():
            return {"canceled": True, "step": 0}
        train_config = TrainConfig.from_overrides(config)
        store = DatasetStore(settings.data_path)
        datasets = [_dataset_entry(store, synthetic_dataset), _dataset_entry(store, real_dataset)]
        synthetic = store.load(synthetic_dataset)[0]
        real = store.load(real_dataset)[0]
        registry = Registry(settings.models_path)

        workdir = job_workdir(settings, job.id or "direct")
        checkpoint = workdir / "checkpoint.pt"
        resume = checkpoint if checkpoint.is_file() else None
        resumed_from = int(load_checkpoint(checkpoint)["step"]) if resume else None
        if resumed_from is not None:
            log.info("job %s: resuming from step %d (%s)", job.id, resumed_from, checkpoint)
            job.set_meta(resumed_from_step=resumed_from)

        def report(progress: Progress) -> None:
            done = progress.step == progress.total_steps
            job.report(
                {
                    "step": progress.step,
                    "total_steps": progress.total_steps,
                    "phase": progress.phase,
                    "losses": progress.losses,
                    "eta_seconds": progress.eta_seconds,
                },
                force=done,
            )

        def checkpointed(run: SimGAN, path: Path) -> None:
            job.set_meta(checkpoint_step=run.step)

        result = train(
            train_config,
            synthetic,
            real,
            registry=registry,
            workdir=workdir,
            resume=resume,
            progress=report,
            should_stop=job.should_stop,
            datasets=datasets,
            on_checkpoint=checkpointed,
        )
        summary = {
            "step": result.step,
            "final_losses": result.final_losses,
            "resumed_from_step": resumed_from,
        }
        if result.stopped and job.cancel_requested:
            return {"canceled": True, "checkpoint": str(result.checkpoint), **summary}
        if result.stopped:
            log.info("job %s: stopped at step %d; it will resume from %s", job.id, result.step, checkpoint)
            return job.retry_later()
        assert result.version is not None
        card = registry.get(result.version)
        return {"model_version": result.version, "metrics": card.metrics, **summary}
