"""Bodies of the /train-jobs and /refine-jobs endpoints, and how a job record becomes one."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from core.config_docs import config_model
from jobs.queue import JobRecord, JobState
from models.noise import MAX_SEED
from service.api.schemas.datasets import EXAMPLE_LABELED, EXAMPLE_REAL, EXAMPLE_SYNTHETIC

QUICK_CONFIG: dict[str, Any] = {
    "steps": 100,
    "batch_size": 16,
    "pretrain_refiner_steps": 20,
    "refiner_channels": 16,
}
"""A run of about a minute on 2 CPU cores, for examples: the defaults train 10-15 minutes."""

TrainConfigOverrides = Annotated[
    dict[str, Any],
    # The typed model for readers of the OpenAPI document; the value itself is checked by
    # core.train_config (its messages name the nearest key of a typo and what a key allows).
    WithJsonSchema(config_model().model_json_schema()),
]


# ------------------------------------------------------------------ training jobs
class TrainJobCreate(BaseModel):
    synthetic_dataset: str = Field(
        description="Id of a stored dataset of kind `synthetic` (the simulator's images)."
    )
    real_dataset: str = Field(description="Id of a stored dataset of kind `real` (unlabelled real images).")
    config: TrainConfigOverrides = Field(
        default_factory=dict,
        description="Training config: any subset of the keys below (the others keep their defaults); "
        "an unknown key is refused with the nearest known ones.",
    )
    real_labeled_dataset: str | None = Field(
        None,
        description="Id of a stored `real` dataset with annotations, used only to evaluate the published "
        "model (downstream gap closure, label preservation); needs config `evaluate: true`.",
    )
    targets: list[str] | None = Field(
        None,
        description="Annotation fields (dotted paths, e.g. `gaze.pitch`) the evaluation's task model "
        "predicts from the images; default: gaze.pitch and gaze.yaw.",
    )

    model_config = ConfigDict(
        extra="forbid",  # a misspelt field (`real_datset`) must not be silently ignored
        json_schema_extra={
            "examples": [
                {
                    "synthetic_dataset": EXAMPLE_SYNTHETIC,
                    "real_dataset": EXAMPLE_REAL,
                    "config": QUICK_CONFIG,
                },
                {
                    "synthetic_dataset": EXAMPLE_SYNTHETIC,
                    "real_dataset": EXAMPLE_REAL,
                    "real_labeled_dataset": EXAMPLE_LABELED,
                    "config": {**QUICK_CONFIG, "evaluate": True},
                },
            ]
        },
    )


class TrainProgress(BaseModel):
    step: int
    total_steps: int
    phase: str | None = Field(
        None,
        description="What the job is doing: queued, pretraining, adversarial, selecting (scoring the "
        "last checkpoint, choosing the one to publish), exporting (ONNX, parity check, publish), "
        "evaluating (with config `evaluate`).",
    )
    stage: str | None = Field(
        None, description="Within pretraining: pretrain_refiner, then pretrain_discriminator."
    )
    losses: dict[str, float] = Field(default_factory=dict)
    eta_seconds: float | None = Field(
        None,
        description="Seconds left of training (a moving average of each phase's step time); while "
        "evaluating, the expected length of the evaluation; null before the first step is timed.",
    )


def _train_progress(job: JobRecord) -> TrainProgress | None:
    """The job's progress; a queued job's is phase `queued` at step 0 of its config's steps."""
    if job.progress:
        progress = dict(job.progress)
        ends_at = progress.pop("ends_at", None)
        if ends_at is not None and job.state is JobState.RUNNING:  # a phase without steps counts down
            progress["eta_seconds"] = max(0.0, float(ends_at) - time.time())
        return TrainProgress.model_validate(progress)
    if job.state is not JobState.QUEUED:
        return None
    config = job.kwargs.get("config", {})
    keys = ("pretrain_refiner_steps", "pretrain_discriminator_steps", "steps")
    total = sum(int(config.get(k, 0)) for k in keys)
    return TrainProgress(step=0, total_steps=total, phase="queued")


class TrainJobPublic(BaseModel):
    id: str
    status: JobState
    synthetic_dataset: str
    real_dataset: str
    real_labeled_dataset: str | None = None
    targets: list[str] | None = None
    config: dict[str, Any] = Field(
        description="The whole config the job trains with (its overrides on the defaults of the day).",
        examples=[{"steps": 100, "batch_size": 16, "pretrain_refiner_steps": 20, "evaluate": False}],
    )
    progress: TrainProgress | None = None
    model_version: str | None = Field(
        None, description="The published refiner, as soon as it is published (before any evaluation)."
    )
    metrics: dict[str, Any] | None = Field(
        None,
        description="Its evaluation metrics (config `evaluate`; also in GET /models/{version}): "
        "`downstream.gap_closed`, `realism`, `labels`; `{error}` if the evaluation could not run.",
        examples=[
            {
                "downstream": {
                    "error_synthetic": 9.1,
                    "error_refined": 6.0,
                    "error_real": 3.2,
                    "gap_closed": 0.53,
                },
                "realism": {"accuracy_real_vs_synthetic": 0.97, "accuracy_real_vs_refined": 0.71},
            }
        ],
    )
    verdict: dict[str, Any] | None = Field(
        None,
        description="Did the published refiner help? `verdict` is `improved`, `no measurable change` or "
        "`worse`, with `why`, the `numbers` behind it (`basis`: downstream error on labeled real images, "
        "or realism and label retention without them) and, unless improved, what to `try`.",
        examples=[
            {
                "verdict": "no measurable change",
                "basis": "label-free",
                "why": "realism moved by +0.000 (97.1% -> 97.1%), within the noise of 0.039",
                "numbers": {
                    "realism_synthetic": 0.971,
                    "realism_refined": 0.971,
                    "label_consistency": 1.0,
                    "label_retention": 1.0,
                },
                "try": ["train longer (config steps) or with a larger budget (config reg_budget)"],
            }
        ],
    )
    activated: bool | None = Field(
        None,
        description="Whether the service switches to this model by itself (config `activate`: by default "
        "only an `improved` one does; activate any by hand with POST /models/{version}/activate).",
    )
    artifacts: dict[str, str] = Field(
        default_factory=dict,
        description="Pictures of the run so far, name -> URL: `samples.png` (synthetic | refined | real) "
        "and `loss_curves.png`; redrawn at every checkpoint, the final ones show the published model.",
    )
    error: str | None = Field(None, description="What went wrong, when the job failed.")
    attempts: int = Field(
        1, description="Runs so far; more than 1 when a dead or stopped worker's job resumed."
    )
    resumed_from_step: int | None = Field(None, description="Checkpoint step the latest run resumed from.")
    checkpoint_step: int | None = Field(None, description="Step of the latest checkpoint written.")
    retry_at: datetime | None = Field(
        None,
        description="Status `stalled` (its worker stopped answering): when it is started again at the "
        "latest; null when it has no retries left (it then fails).",
    )
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def of(cls, job: JobRecord, artifacts: list[str]) -> TrainJobPublic:
        """`job` as the API shows it; `artifacts` are the names of the pictures it has drawn so far."""
        result = job.result or {}
        return cls(
            id=job.id,
            status=job.state,
            synthetic_dataset=job.kwargs.get("synthetic_dataset", ""),
            real_dataset=job.kwargs.get("real_dataset", ""),
            real_labeled_dataset=job.kwargs.get("real_labeled_dataset"),
            targets=job.kwargs.get("targets"),
            config=job.kwargs.get("config", {}),
            artifacts={name: f"/train-jobs/{job.id}/artifacts/{name}" for name in artifacts},
            progress=_train_progress(job),
            # Set by the job as soon as it publishes, while it may still be evaluating.
            model_version=result.get("model_version") or job.meta.get("model_version"),
            metrics=result.get("metrics") if job.state is JobState.SUCCEEDED else None,
            verdict=result.get("verdict"),
            activated=result.get("activated"),
            error=job.error,
            attempts=job.attempts,
            resumed_from_step=job.meta.get("resumed_from_step"),
            checkpoint_step=job.meta.get("checkpoint_step"),
            retry_at=job.retry_at,
            created_at=job.created_at,
            started_at=job.started_at,
            ended_at=job.ended_at,
        )


class TrainJobList(BaseModel):
    jobs: list[TrainJobPublic]


# ------------------------------------------------------------ bulk refine jobs
class RefineJobCreate(BaseModel):
    dataset: str = Field(description="Id of a stored dataset.")
    model: str | None = Field(None, description="Model version (`v3`, `latest`); default the active one.")
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed of a stochastic model's per-image noise: the same image with the same seed "
        "gives the same output here and in POST /refine. Deterministic models ignore it.",
    )

    model_config = {"json_schema_extra": {"examples": [{"dataset": EXAMPLE_SYNTHETIC, "model": "active"}]}}


class RefineProgress(BaseModel):
    images_done: int
    images_total: int
    eta_seconds: float | None = None


class RefineJobPublic(BaseModel):
    id: str
    status: JobState
    dataset: str
    model: str = Field(description="The version refining this dataset (resolved when the job was queued).")
    seed: int = Field(0, description="The seed of a stochastic model's noise.")
    progress: RefineProgress | None = None
    result: str | None = Field(None, description="Path of the result zip on this API, once succeeded.")
    error: str | None = None
    retry_at: datetime | None = Field(
        None,
        description="Status `stalled` (its worker stopped answering): when it is started again at the "
        "latest; null when it has no retries left (it then fails).",
    )
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def of(cls, job: JobRecord) -> RefineJobPublic:
        done = job.state is JobState.SUCCEEDED
        return cls(
            id=job.id,
            status=job.state,
            dataset=job.kwargs.get("dataset", ""),
            model=job.kwargs.get("model", ""),
            seed=job.kwargs.get("seed", 0),
            progress=RefineProgress.model_validate(job.progress) if job.progress else None,
            result=f"/refine-jobs/{job.id}/result" if done else None,
            error=job.error,
            retry_at=job.retry_at,
            created_at=job.created_at,
            started_at=job.started_at,
            ended_at=job.ended_at,
        )


class RefineJobList(BaseModel):
    jobs: list[RefineJobPublic]
