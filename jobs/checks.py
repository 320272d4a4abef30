"""What must hold before a job is queued, as plain functions raising ClientError.

Any enqueuer (the API, a CLI) calls these with the dataset store and plain ids, so a job that
would fail on its first line for a wrong dataset is refused before it takes a worker. The
messages name the request field at fault (`real_dataset: ...`), as the API's bodies spell them.
"""

from __future__ import annotations

from typing import Any

from core.datasets import DatasetInfo, DatasetStore
from core.errors import ClientError
from core.train_config import ConfigError, TrainConfig
from models import ModelCard, Registry


def dataset(store: DatasetStore, field: str, dataset_id: str, kind: str | None = None) -> DatasetInfo:
    """The stored dataset `dataset_id`, named by request field `field`, of `kind` when given."""
    try:
        info = store.get(dataset_id)
    except ClientError as exc:
        raise ClientError(exc.status_code, f"{field}: {exc.detail}") from None
    if kind is not None and info.kind != kind:
        raise ClientError(422, f"{field} must be a dataset of kind {kind}; '{dataset_id}' is {info.kind}")
    return info


def train_config(overrides: dict[str, Any]) -> TrainConfig:
    """The whole training config from a job's overrides; unknown keys and bad values are a 422."""
    try:
        return TrainConfig.from_overrides(overrides)
    except ConfigError as exc:
        raise ClientError(422, f"config: {exc}") from None


def check_train_datasets(
    store: DatasetStore,
    synthetic_dataset: str,
    real_dataset: str,
    real_labeled_dataset: str | None = None,
    targets: list[str] | None = None,
    evaluate: bool = False,
) -> None:
    """The datasets of a training job exist, have the right kinds and agree on channels; the
    labelled one (evaluation only) comes with `evaluate` and, like the synthetic one, has annotations."""
    synthetic = dataset(store, "synthetic_dataset", synthetic_dataset, "synthetic")
    real = dataset(store, "real_dataset", real_dataset, "real")
    if synthetic.channels != real.channels:
        raise ClientError(
            422,
            f"the synthetic dataset has {synthetic.channels}-channel images and the real one "
            f"{real.channels}; training needs the same channel count on both sides",
        )
    if real_labeled_dataset is None:
        if targets is not None:
            raise ClientError(422, "targets name what the evaluation predicts; give real_labeled_dataset too")
        return
    if not evaluate:
        raise ClientError(
            422, "real_labeled_dataset is only used by the evaluation: set config evaluate to true"
        )
    labeled = dataset(store, "real_labeled_dataset", real_labeled_dataset, "real")
    for info, field in ((synthetic, "synthetic_dataset"), (labeled, "real_labeled_dataset")):
        if not info.has_annotations:
            raise ClientError(
                422,
                f"{field} '{info.id}' has no annotations; the evaluation's task model learns them "
                "(upload it with annotations.jsonl or sidecar JSON)",
            )
    if labeled.channels != synthetic.channels:
        raise ClientError(
            422,
            f"real_labeled_dataset has {labeled.channels}-channel images and the synthetic one "
            f"{synthetic.channels}; the evaluation needs the same channel count",
        )


def check_refine_job(
    store: DatasetStore, registry: Registry, dataset_id: str, model: str | None
) -> ModelCard:
    """The card of the model a bulk refine job of dataset `dataset_id` will use (`model`, default
    the active one), once the dataset exists and has that model's channel count. A model that does
    not exist raises the registry's ModelNotFound; the dataset is looked up first."""
    info = dataset(store, "dataset", dataset_id)
    card = registry.get(registry.resolve(model or "active"))
    if info.channels != card.channels:
        raise ClientError(
            422,
            f"model {card.version} takes {card.channels}-channel images and dataset {dataset_id} has "
            f"{info.channels}-channel ones; name a model trained on such images",
        )
    return card
