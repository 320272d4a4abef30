"""The training job: what a `train` queue worker runs for POST /train-jobs.

Enqueued by its dotted path (`jobs.train.run_train_job`), so the API never imports torch. Each
job trains in SIMGAN_HOME/jobs/<job id>/ and resumes from the checkpoint.pt it finds there: a
job whose worker died or was stopped is requeued by rq and simply carries on from its last
checkpoint on whichever worker picks it up. Its pictures (sample grid, loss curves) are redrawn in
jobs/<job id>/artifacts/ at every checkpoint and served by GET /train-jobs/{id}/artifacts/{name}.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from rq import Retry

from core.datasets import DatasetStore
from core.layout import ARTIFACTS_DIR, CURVES_NAME, SAMPLES_NAME
from core.settings import get_settings
from core.train_config import TrainConfig
from jobs.context import JobContext
from models import Registry, RegistryError
from trainer.artifacts import retitle, write_evaluation_chart
from trainer.checkpoint import load_checkpoint
from trainer.data import ImageSet
from trainer.evaluate import EvaluationError, evaluate
from trainer.export import dataset_entry, publish_checkpoint
from trainer.run import SimGAN
from trainer.selection import build_selector
from trainer.task_models import TaskBudget
from trainer.training import Hooks, Progress, train

log = logging.getLogger(__name__)


def _dataset_entry(store: DatasetStore, dataset_id: str, images: np.ndarray) -> dict[str, Any]:
    """The card's record of a stored training dataset: its id, source and the sha256 of its images.npy."""
    info = store.get(dataset_id)
    return dataset_entry(info.kind, images, sha256=info.sha256, id=info.id, source=info.source)


def _split_labeled(labeled: ImageSet | None, seed: int) -> tuple[ImageSet | None, ImageSet | None]:
    """A labeled real set in two halves: one chooses the checkpoint, the other evaluates the choice,
    so the reported figures are not measured on the images that picked the winner."""
    if labeled is None or labeled.annotations is None or len(labeled) < 4:
        return None, labeled
    order = np.random.default_rng(seed).permutation(len(labeled))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    notes = labeled.annotations
    choose, score = (ImageSet(labeled.images[h], [notes[i] for i in h]) for h in halves)
    return choose, score


def _published(registry: Registry, version: Any) -> str | None:
    """`version` when it is a model in `registry` (a rerun job that had published before it died)."""
    if not isinstance(version, str):
        return None
    try:
        registry.get(version)
    except RegistryError:
        return None
    return version


JOB_PHASES = ("queued", "pretraining", "adversarial", "selecting", "exporting", "evaluating")
"""What a train job's progress.phase says it is doing, in order (evaluating only with config evaluate)."""
_TRAINER_PHASES = {"pretrain_refiner": "pretraining", "pretrain_discriminator": "pretraining"}

EVALUATION_SECONDS_AT_DEFAULT = 120.0
"""An evaluation at the default task budget (300 steps) on a shared 2-core CPU: trainer/evaluate.py."""


def _hooks(job: JobContext) -> Hooks:
    """Progress into the job's meta (phase changes and the last step always), stops from the worker
    or a cancel."""

    def report(progress: Progress) -> None:
        phase = _TRAINER_PHASES.get(progress.phase, progress.phase)
        previous = (job.meta.get("progress") or {}).get("phase")
        job.report(
            {
                "step": progress.step,
                "total_steps": progress.total_steps,
                "phase": phase,
                "stage": progress.phase if phase == "pretraining" else None,
                "losses": progress.losses,
                "eta_seconds": progress.eta_seconds,
            },
            force=progress.step in (0, progress.total_steps) or phase != previous,
        )

    def checkpointed(run: SimGAN, path: Path) -> None:
        job.set_meta(checkpoint_step=run.step)

    return Hooks(progress=report, should_stop=job.should_stop, on_checkpoint=checkpointed)


def _report_phase(job: JobContext, phase: str, eta_seconds: float | None) -> None:
    """A phase that reports no steps: its ETA counts down from `eta_seconds` (ends_at, epoch seconds)."""
    progress = dict(job.meta.get("progress") or {})
    ends_at = None if eta_seconds is None else time.time() + eta_seconds
    job.report(
        {**progress, "phase": phase, "stage": None, "eta_seconds": eta_seconds, "ends_at": ends_at},
        force=True,
    )


def _train(
    job: JobContext,
    config: TrainConfig,
    workdir: Path,
    data: tuple[ImageSet, np.ndarray, ImageSet | None, list[str] | None],
    datasets: list[dict[str, Any]],
    registry: Registry,
) -> dict[str, Any] | Retry:
    """Train (resuming from workdir's checkpoint if there is one) and publish; the job's summary."""
    checkpoint = workdir / "checkpoint.pt"
    resume = checkpoint if checkpoint.is_file() else None
    resumed_from = int(load_checkpoint(checkpoint)["step"]) if resume else None
    if resumed_from is not None:
        log.info("job %s: resuming from step %d (%s)", job.id, resumed_from, checkpoint)
        job.set_meta(resumed_from_step=resumed_from)
    synthetic_set, real, choose, targets = data
    synthetic = synthetic_set.images
    selector = build_selector(
        synthetic,
        synthetic_set.annotations,
        real,
        targets=targets,
        real_labeled=None if choose is None else (choose.images, choose.annotations or []),
        seed=config.seed,
    )
    result = train(
        config, synthetic, real, workdir=workdir, resume=resume, hooks=_hooks(job), selector=selector
    )
    summary = {"step": result.step, "final_losses": result.final_losses, "resumed_from_step": resumed_from}
    if result.stopped and job.cancel_requested:
        return {"canceled": True, "checkpoint": str(result.checkpoint), **summary}
    if result.stopped:
        log.info("job %s: stopped at step %d; it will resume from %s", job.id, result.step, checkpoint)
        return job.retry_later()
    _report_phase(job, "exporting", eta_seconds=None)
    card = publish_checkpoint(result.checkpoint, registry, datasets=datasets, job_id=job.id)
    job.set_meta(model_version=card.version)  # live at once: GET /train-jobs/{id} shows it from now on
    chosen = card.selection.get("step")
    for name in (SAMPLES_NAME, CURVES_NAME):  # the final pictures show this model: name it
        picture = workdir / ARTIFACTS_DIR / name
        if picture.is_file():
            published = f"model {card.version}" + (
                f" (the refiner of step {chosen})" if chosen is not None else ""
            )
            retitle(picture, f"{job.id or workdir.name} - step {result.step} - {published}")
    return {
        "model_version": card.version,
        "verdict": card.verdict,
        "activated": card.auto_activate,
        **summary,
    }


def _evaluate(
    job: JobContext,
    registry: Registry,
    version: str,
    synthetic: ImageSet,
    real: np.ndarray,
    labeled: ImageSet | None,
    targets: list[str] | None,
    seed: int,
    budget: TaskBudget,
    sources: dict[str, str | None],
) -> dict[str, Any]:
    """Evaluate the published model and record the metrics beside its card; an evaluation that
    cannot run (e.g. annotations without the target fields) is reported, the model stays published."""
    # evaluate() reports no progress of its own: its duration scales with the task budget's steps.
    _report_phase(job, "evaluating", eta_seconds=EVALUATION_SECONDS_AT_DEFAULT * budget.steps / 300)
    try:
        metrics = evaluate(
            version, synthetic, real, labeled, seed=seed, registry=registry, targets=targets, budget=budget
        )
    except EvaluationError as exc:
        log.warning("job %s: %s was published but could not be evaluated: %s", job.id, version, exc)
        return {"error": f"evaluation failed: {exc}"}
    registry.add_metrics(version, {**metrics, "datasets": sources})
    try:
        workdir = get_settings().job_workdir(job.id or "direct")
        write_evaluation_chart(
            workdir / ARTIFACTS_DIR, metrics, title=f"Evaluation of {version} (job {job.id})"
        )
    except ValueError as exc:  # nothing to draw (no realism numbers): the metrics are what matters
        log.info("job %s: no evaluation chart: %s", job.id, exc)
    return metrics


def run_train_job(
    synthetic_dataset: str,
    real_dataset: str,
    config: dict[str, Any],
    real_labeled_dataset: str | None = None,
    targets: list[str] | None = None,
) -> dict[str, Any] | Retry:
    """Train on two stored datasets and publish the refiner; returns {model_version, metrics, ...}.

    With config `evaluate` the published model is then evaluated (trainer/evaluate.py): realism
    and kernel distance against the real training set, and with `real_labeled_dataset` the
    downstream gap closure and label preservation on annotation fields `targets` (default gaze);
    the metrics are recorded in the registry beside the card.

    Returns {"canceled": True, ...} when the user canceled it (a checkpoint is left behind), and a
    `Retry` when its worker is going away, so that another worker resumes it.
    """
    settings = get_settings()
    with JobContext.current(settings) as job:
        if job.cancel_flag():
            return {"canceled": True, "step": 0}
        # The config resolved when the job was queued; keys added since then keep their old meaning.
        train_config = TrainConfig.from_saved(config)
        if not job.meta.get("progress"):  # from the first second: loading the data takes a while
            total = sum(
                (
                    train_config.pretrain_refiner_steps,
                    train_config.pretrain_discriminator_steps,
                    train_config.steps,
                )
            )
            job.report(
                {"step": 0, "total_steps": total, "phase": "pretraining", "eta_seconds": None}, force=True
            )
        store = DatasetStore(settings.data_path)
        registry = Registry(settings.models_path)
        workdir = settings.job_workdir(job.id or "direct")
        synthetic, synthetic_notes, _ = store.load(synthetic_dataset)
        real = store.load(real_dataset)[0]
        labeled = None
        if real_labeled_dataset is not None:
            labeled_images, labeled_notes, _ = store.load(real_labeled_dataset)
            labeled = ImageSet(labeled_images, labeled_notes)
        choose, scored = _split_labeled(labeled, train_config.seed)
        data = (ImageSet(synthetic, synthetic_notes), real, choose, targets)

        # A run that died after publishing (while evaluating) must not train and publish again.
        version = _published(registry, job.meta.get("model_version"))
        if version is None:
            datasets = [
                _dataset_entry(store, synthetic_dataset, synthetic),
                _dataset_entry(store, real_dataset, real),
            ]
            outcome = _train(job, train_config, workdir, data, datasets, registry)
            if not isinstance(outcome, dict) or outcome.get("canceled"):
                return outcome
            version = outcome["model_version"]
            job.set_meta(model_version=version)
        else:
            log.info("job %s: %s was published before this run; not training again", job.id, version)
            state = load_checkpoint(workdir / "checkpoint.pt")
            card = registry.get(version)
            outcome = {
                "model_version": version,
                "verdict": card.verdict,
                "activated": card.auto_activate,
                "step": int(state["step"]),
                "final_losses": dict(state["losses"]),
                "resumed_from_step": job.meta.get("resumed_from_step"),
            }

        metrics = registry.get(version).metrics
        if train_config.evaluate:
            metrics = _evaluate(
                job,
                registry,
                version,
                ImageSet(synthetic, synthetic_notes),
                real,
                scored,
                targets,
                train_config.seed,
                TaskBudget(steps=settings.evaluation_task_steps),
                {"synthetic": synthetic_dataset, "real": real_dataset, "real_labeled": real_labeled_dataset},
            )
        return {**outcome, "metrics": metrics}
