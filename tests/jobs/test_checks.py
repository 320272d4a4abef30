"""jobs.checks: what must hold before a job is queued, without the API (any enqueuer can call it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.datasets import DatasetStore
from core.errors import ClientError
from jobs import checks
from models import Registry, RegistryError
from tests.factories import store_eye_dataset


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "data")


@pytest.fixture
def ids(store: DatasetStore) -> dict[str, str]:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    return {
        "synthetic": store_eye_dataset(store.root, "synthetic", count=4).id,
        "real": store_eye_dataset(store.root, "real", count=4, seed=1).id,
        "rgb_real": store.create_from_arrays(rgb, None, None, "real", "test").id,
    }


def refused(call: Callable[..., object], *args: object, **kwargs: object) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_matching_datasets_pass(store: DatasetStore, ids: dict[str, str]) -> None:
    checks.check_train_datasets(store, ids["synthetic"], ids["real"])
    checks.check_train_datasets(
        store, ids["synthetic"], ids["real"], ids["real"], ["gaze.pitch"], evaluate=True
    )


def test_a_missing_dataset_is_404_naming_the_field(store: DatasetStore, ids: dict[str, str]) -> None:
    error = refused(checks.check_train_datasets, store, ids["synthetic"], "0" * 16)

    assert error.status_code == 404
    assert error.detail.startswith("real_dataset: ")


def test_a_dataset_of_the_wrong_kind_is_422(store: DatasetStore, ids: dict[str, str]) -> None:
    error = refused(checks.check_train_datasets, store, ids["real"], ids["real"])

    assert error.status_code == 422
    assert error.detail == f"synthetic_dataset must be a dataset of kind synthetic; '{ids['real']}' is real"


def test_datasets_of_different_channel_counts_are_422(store: DatasetStore, ids: dict[str, str]) -> None:
    error = refused(checks.check_train_datasets, store, ids["synthetic"], ids["rgb_real"])

    assert error.status_code == 422
    assert "1-channel images and the real one 3" in error.detail


@pytest.mark.parametrize(
    ("labeled", "targets", "evaluate", "words"),
    [
        (False, ["gaze.pitch"], True, "give real_labeled_dataset too"),
        (True, None, False, "set config evaluate to true"),
    ],
)
def test_the_evaluation_fields_need_each_other(
    store: DatasetStore,
    ids: dict[str, str],
    labeled: bool,
    targets: list[str] | None,
    evaluate: bool,
    words: str,
) -> None:
    error = refused(
        checks.check_train_datasets,
        store,
        ids["synthetic"],
        ids["real"],
        ids["real"] if labeled else None,
        targets,
        evaluate,
    )

    assert error.status_code == 422
    assert words in error.detail


def test_a_labeled_dataset_without_annotations_is_422(store: DatasetStore, ids: dict[str, str]) -> None:
    rgb = ids["rgb_real"]
    error = refused(checks.check_train_datasets, store, ids["synthetic"], ids["real"], rgb, evaluate=True)

    assert error.status_code == 422
    assert error.detail.startswith(f"real_labeled_dataset '{rgb}' has no annotations")


def test_train_config_refuses_unknown_keys_as_422() -> None:
    error = refused(checks.train_config, {"no_such_key": 1})

    assert error.status_code == 422
    assert error.detail.startswith("config: ")
    assert checks.train_config({}).to_dict()  # the defaults


def test_a_refine_job_looks_its_dataset_up_before_its_model(store: DatasetStore, tmp_path: Path) -> None:
    empty = Registry(tmp_path / "models")
    error = refused(checks.check_refine_job, store, empty, "0" * 16, "v9")

    assert error.status_code == 404
    assert error.detail.startswith("dataset: ")


def test_a_refine_job_for_a_model_that_does_not_exist_raises_the_registrys_error(
    store: DatasetStore, ids: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(RegistryError):
        checks.check_refine_job(store, Registry(tmp_path / "models"), ids["real"], "v9")
