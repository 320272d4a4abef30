"""The one settings class. Every field is read from the environment with the SIMGAN_ prefix
(SIMGAN_PORT, SIMGAN_MAX_IMAGE_PIXELS, ...); README "Settings" lists them all."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.layout import DATA_DIR, JOBS_DIR, MODELS_DIR, RESULTS_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMGAN_", extra="ignore")

    # --- state
    home: Path = Field(Path(".simgan"), description="Root of all state: models/, data/, redis/, jobs/.")
    model_dir: Path | None = Field(None, description="Model registry directory (default: HOME/models).")
    data_dir: Path | None = Field(None, description="Dataset store directory (default: HOME/data).")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SIMGAN_REDIS_URL", "REDIS_URL"),
        description="External Redis (also read from REDIS_URL). Unset: `simgan serve` starts a private one.",
    )
    redis_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the private Redis of `simgan serve`; 0: the one it had last time if free, "
        "else any free one. Its URL is written to HOME/redis/url.",
    )

    # --- HTTP
    host: str = Field("127.0.0.1", description="Address `simgan serve` binds.")
    port: int = Field(8000, description="Port `simgan serve` binds.")
    api_processes: int = Field(
        1,
        ge=1,
        description="API processes `simgan serve` starts on its port, each with its own model and "
        "batcher; with more than one and `SIMGAN_INTRA_OP_THREADS` 0, each gets the CPU cores divided "
        'among them. README "Benchmarks" says when more than one pays.',
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="A connection whose request headers are not all in within this is closed."
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A request whose body stops arriving for this long gets 408 (a Content-Length larger "
        "than the body cannot hold a connection).",
    )
    api_keys: str = Field(
        "",
        description="Comma-separated `scope:key` pairs (scopes `refine`: POST /refine and reading models; "
        "`admin`: everything); clients send `Authorization: Bearer KEY`. Unset: no keys, and `simgan "
        "serve` binds only loopback addresses.",
    )

    # --- /refine limits
    max_request_bytes: int = Field(32 * 1024 * 1024, description="Largest /refine request body.")
    max_image_pixels: int = Field(1024 * 1024, description="Largest image (width x height) /refine accepts.")
    max_images_per_request: int = Field(64, description="Most images in one /refine request.")

    # --- inference
    provider: Literal["auto", "cpu", "cuda", "openvino"] = Field(
        "auto",
        description="Inference engine: auto = CUDA where usable, else OpenVINO where its plugin loads, "
        "else onnxruntime's CPU provider. Whichever is chosen must match the CPU provider within 2 grey "
        "levels on a probe batch, or the next is used.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="OpenVINO's inference precision; auto = bf16 where the CPU has AMX, else fp32."
    )
    intra_op_threads: int = Field(
        0, description="Threads per inference, for every engine (0 = the engine's default: every core)."
    )
    batch_max_size: int = Field(
        4,
        description="Most images in one model call (fewer for large images: 4 megapixels in all). Small "
        'batches keep the model busy while other requests are decoded and encoded (README "Inference '
        'engine"); on a GPU raise it.',
    )
    max_call_pixels: int = Field(
        256 * 256,
        ge=4096,
        description="Most input pixels (images x height x width) in one model call: the engine's working "
        "memory grows with them, and a small request waits for at most one such call. A batch over it is "
        "split; an image over it is refined in overlapping tiles whose output equals the untiled one "
        "(256x256 tiles of a large image cost about 16% more work than one call).",
    )
    batch_max_delay_ms: float = Field(
        0.0,
        description="How long a request waits for others to batch with. 0: none; under load, requests "
        "still batch, gathering while the model runs.",
    )
    batch_queue_size: int = Field(256, description="Images waiting for the model before /refine answers 503.")
    reload_poll_seconds: float = Field(2.0, description="How often the service looks for a newer model.")
    model_cache_size: int = Field(
        2,
        description="Models other than the active one kept loaded for /refine requests that name a version.",
    )
    seed_bundled: bool = Field(
        True, description="At start-up, publish the bundled default refiner into an empty model registry."
    )

    # --- datasets
    max_upload_bytes: int = Field(1024 * 1024 * 1024, description="Largest dataset upload.")
    max_archive_members: int = Field(200_000, description="Most files in a dataset archive.")
    max_archive_bytes: int = Field(
        4 * 1024 * 1024 * 1024, description="Most bytes a dataset archive may unpack to (zip-bomb guard)."
    )
    max_archive_ratio: int = Field(
        100,
        description="Most times its own size a dataset archive may unpack to, past its first 64 MiB "
        "(zip-bomb guard).",
    )
    max_dataset_pixels: int = Field(
        2_000_000_000, description="Most pixels (images x height x width x channels) in one dataset."
    )

    # --- jobs
    train_job_timeout: int = Field(7 * 24 * 3600, description="Seconds before a training job is stopped.")
    refine_job_timeout: int = Field(6 * 3600, description="Seconds before a bulk refine job is stopped.")
    job_result_ttl: int = Field(30 * 24 * 3600, description="Seconds finished jobs stay visible.")
    evaluation_task_steps: int = Field(
        300,
        ge=1,
        description="Adam steps each task model and classifier trains for when a train job evaluates "
        "its model (config `evaluate`); 300 takes about 2 minutes on a CPU for 2000 eye images.",
    )
    job_retries: int = Field(
        3,
        description="Times a job whose worker died or was stopped is started again (training resumes "
        "from its last checkpoint). A job that raises an error is not retried.",
    )
    worker_heartbeat_seconds: int = Field(
        10,
        description="How often a worker reports that its job is alive; a job silent for 3 of these is "
        "abandoned and requeued by the next worker.",
    )
    worker_maintenance_seconds: int = Field(
        60, description="How often an idle worker looks for jobs abandoned by dead workers."
    )
    progress_interval_seconds: float = Field(
        0.5, description="Least time between two progress updates a running job writes to Redis."
    )
    refine_job_batch_size: int = Field(64, description="Images per model call in a bulk refine job.")
    redis_timeout_seconds: float = Field(
        0.5,
        gt=0,
        description="Connect and reply timeout of the API's Redis calls; past it, job endpoints answer 503.",
    )
    redis_recheck_seconds: float = Field(
        2.0,
        ge=0,
        description="After Redis failed to answer, how long the API answers 503 (Retry-After) at once, "
        "without waiting on Redis again: a stalled Redis ties up no threads.",
    )
    shutdown_grace_seconds: float = Field(
        15.0,
        description="How long `simgan serve` waits for its processes to stop (a running training job "
        "writes a checkpoint first) before killing them.",
    )

    log_level: str = Field("info", description="Log level of the service and workers.")

    @field_validator("api_keys")
    @classmethod
    def _keys_are_scope_key_pairs(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @property
    def key_scopes(self) -> dict[str, str]:
        """API key -> its scope (`refine` or `admin`); empty when no keys are set."""
        return parse_api_keys(self.api_keys)

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.home / MODELS_DIR

    @property
    def data_path(self) -> Path:
        return self.data_dir or self.home / DATA_DIR

    def job_workdir(self, job_id: str) -> Path:
        """Where a training job keeps its checkpoint and pictures: SIMGAN_HOME/jobs/<job id>/."""
        return self.home / JOBS_DIR / job_id

    def result_path(self, job_id: str) -> Path:
        """Where a bulk refine job's zip lands: SIMGAN_HOME/results/<job id>.zip."""
        return self.home / RESULTS_DIR / f"{job_id}.zip"


API_SCOPES = ("refine", "admin")
MIN_KEY_LENGTH = 16


def parse_api_keys(text: str) -> dict[str, str]:
    """`refine:KEY1,admin:KEY2` -> {KEY1: "refine", KEY2: "admin"}; ValueError saying what is wrong
    (never quoting a key, which would put it in logs)."""
    scopes: dict[str, str] = {}
    for number, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        scope, _, key = item.partition(":")
        if scope not in API_SCOPES or not key:
            raise ValueError(
                f"SIMGAN_API_KEYS entry {number} is not `scope:key` with scope one of {', '.join(API_SCOPES)}"
            )
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise ValueError(
                f"SIMGAN_API_KEYS entry {number}: a key needs at least {MIN_KEY_LENGTH} characters and no "
                "spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if key in scopes:
            raise ValueError(f"SIMGAN_API_KEYS entry {number} repeats a key")
        scopes[key] = scope
    return scopes


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """The README's settings table, generated from this class so the two never drift apart."""
    rows = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `SIMGAN_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
