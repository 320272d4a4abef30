"""Where things live on disk: the one place that names the files and folders of SIMGAN_HOME.

SIMGAN_HOME/
  models/                  the model registry (models.registry; SIMGAN_MODEL_DIR moves it)
  data/<dataset id>/       the dataset store (core.datasets; SIMGAN_DATA_DIR moves it)
    images.npy             uint8 (N, H, W, C), C in {1, 3}
    annotations.jsonl      one line per image, in image order: {"file": name, ...annotations}
    meta.json              DatasetInfo, written last
  jobs/<job id>/           a train job's checkpoint and pictures, a refine job's result
    checkpoint.pt
    artifacts/samples.png, artifacts/loss_curves.png, artifacts/evaluation.png
  redis/                   the private Redis of `simgan serve` (append-only file)
    url                    its URL while it runs (`simgan status`, `rq info --url "$(cat ...)"`)
"""

from __future__ import annotations

IMAGES_NAME = "images.npy"
ANNOTATIONS_NAME = "annotations.jsonl"
META_NAME = "meta.json"

MODELS_DIR = "models"
DATA_DIR = "data"
JOBS_DIR = "jobs"
RESULTS_DIR = "results"
REDIS_DIR = "redis"
SERVE_LOCK_NAME = "serve.lock"
"""SIMGAN_HOME/serve.lock: held (flock) by the `simgan serve` that runs the private Redis; holds its PID."""
REDIS_URL_NAME = "url"

STATE_USERS: dict[str, tuple[str, ...]] = {
    MODELS_DIR: ("serve", "worker refine", "worker train"),
    DATA_DIR: ("serve", "worker refine", "worker train"),
    JOBS_DIR: ("serve", "worker train"),  # the API serves a train job's pictures from here
    RESULTS_DIR: ("serve", "worker refine"),  # the API serves a refine job's zip from here
}
"""Which processes read or write each directory of SIMGAN_HOME: `simgan serve` (the API), and
`simgan worker` for each queue. A deployment must give every user of a directory the same one."""
ARTIFACTS_DIR = "artifacts"
"""Inside a train job's directory: the pictures the API serves at /train-jobs/{id}/artifacts/{name}."""
SAMPLES_NAME = "samples.png"
CURVES_NAME = "loss_curves.png"
EVALUATION_NAME = "evaluation.png"
CHECKPOINT_NAME = "checkpoint.pt"
