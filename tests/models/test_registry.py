from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.files import sha256_file
from models import IOSpec, ModelCard, ModelNotFound, Registry, RegistryError


def make_card(**overrides: object) -> ModelCard:
    values: dict = {
        "io": IOSpec(channels=1),
        "onnx_sha256": "",
        "onnx_opset": 17,
        "parity_max_abs_error": 0.0,
    }
    values.update(overrides)
    return ModelCard(**values)


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "some.onnx"
    path.write_bytes(b"not really onnx, the registry does not parse it")
    return path


def test_empty_registry_lists_nothing_and_latest_is_missing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    assert registry.versions() == []
    with pytest.raises(ModelNotFound, match="no model is published yet"):
        registry.resolve("latest")


def test_publish_assigns_increasing_versions_and_records_the_sha256(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    first = registry.publish(onnx_file, make_card())
    second = registry.publish(onnx_file, make_card(parent=first.version))
    assert (first.version, second.version) == ("v1", "v2")
    assert second.parent == "v1"
    assert registry.get("v1").onnx_sha256 == sha256_file(onnx_file)
    assert registry.resolve("latest") == "v2"
    assert registry.onnx_path("v2").read_bytes() == onnx_file.read_bytes()


HF_SECTIONS = (
    "## Uses", "### Direct use", "### Out-of-scope use", "## Training data", "## Training procedure",
    "## Evaluation", "## Limitations", "## How to use", "## License", "## Lineage",
)  # fmt: skip


def test_a_readme_in_the_hugging_face_layout_is_written_beside_the_card(
    tmp_path: Path, onnx_file: Path
) -> None:
    registry = Registry(tmp_path)
    datasets = [{"kind": "synthetic", "id": "ab12", "count": 40, "height": 8, "width": 8, "channels": 1,
                 "sha256": "f" * 64, "source": "simulator eyes"}]  # fmt: skip
    first = registry.publish(onnx_file, make_card())
    card = registry.publish(
        onnx_file,
        make_card(parent=first.version, job_id="job-7", datasets=datasets, config={"steps": 5},
                  verdict={"verdict": "improved", "why": "realism fell", "numbers": {"realism_gain": 0.2}}),
    )  # fmt: skip

    text = (tmp_path / card.version / "README.md").read_text()

    assert text.startswith("---\nlicense: other\nlibrary_name: onnx\n")
    assert "datasets:\n- ab12\n---" in text
    positions = [text.index(section) for section in HF_SECTIONS]
    assert positions == sorted(positions)
    assert "Verdict of its train job: **improved** (realism fell)" in text
    assert "| synthetic | ab12 | 40 | 8x8 | 1 | `ffffffffffffffff` | simulator eyes |" in text
    assert '"steps": 5' in text and "| realism_gain | 0.2 |" in text
    assert "- **Parent:** v1" in text and "- **Train job:** job-7" in text
    assert "- [samples.png](/train-jobs/job-7/artifacts/samples.png)" in text
    assert "- [loss_curves.png](/train-jobs/job-7/artifacts/loss_curves.png)" in text
    assert json.loads((tmp_path / card.version / "card.json").read_text())["job_id"] == "job-7"


def test_a_recorded_evaluation_is_added_to_the_readme(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    card = registry.publish(onnx_file, make_card())
    assert "No evaluation recorded" in (tmp_path / card.version / "README.md").read_text()

    registry.add_metrics(card.version, {"downstream": {"gap_closed": 0.42}, "realism": {"refined": 0.61}})

    text = (tmp_path / card.version / "README.md").read_text()
    assert "| downstream.gap_closed | 0.42 |" in text
    assert "| realism.refined | 0.61 |" in text
    assert "- **gap_closed**: share of the synthetic-to-real gap" in text


def test_versions_sort_by_number_not_text(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    for _ in range(11):
        registry.publish(onnx_file, make_card())
    assert registry.versions()[-2:] == ["v10", "v11"]
    assert registry.latest() == "v11"


def test_activate_pins_and_latest_unpins(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish(onnx_file, make_card())
    registry.publish(onnx_file, make_card())
    assert registry.resolve("active") == "v2"
    registry.activate("v1")
    assert registry.resolve("active") == "v1"
    registry.publish(onnx_file, make_card())
    assert registry.resolve("active") == "v1", "a pinned service does not follow new publishes"
    registry.activate("latest")
    assert registry.resolve("active") == "v3"


def test_active_is_the_newest_model_that_activates_itself(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish(onnx_file, make_card())
    registry.publish(onnx_file, make_card(auto_activate=False, verdict={"verdict": "no measurable change"}))

    assert registry.latest() == "v2"
    assert registry.resolve("active") == "v1"
    registry.activate("v2")
    assert registry.resolve("active") == "v2"


def test_a_registry_of_models_none_of_which_activates_itself_serves_its_newest(
    tmp_path: Path, onnx_file: Path
) -> None:
    registry = Registry(tmp_path)
    registry.publish(onnx_file, make_card(auto_activate=False))
    registry.publish(onnx_file, make_card(auto_activate=False))

    assert registry.resolve("active") == "v2"


def test_the_bundled_default_stays_active_over_a_later_model_that_did_not_improve(
    tmp_path: Path, onnx_file: Path
) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "model.onnx").write_bytes(onnx_file.read_bytes())
    (bundled / "card.json").write_text(make_card(auto_activate=False).to_json())
    registry = Registry(tmp_path / "models")

    registry.seed_bundled(bundled)
    registry.publish(onnx_file, make_card(auto_activate=False))

    assert registry.resolve("active") == "v1"


def test_unknown_and_malformed_versions_say_what_exists(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    registry.publish(onnx_file, make_card())
    with pytest.raises(ModelNotFound, match=r"'v9' does not exist \(published: v1\)"):
        registry.get("v9")
    with pytest.raises(RegistryError, match="versions look like 'v3'"):
        registry.get("../etc")
    with pytest.raises(ModelNotFound):
        registry.activate("v9")


def test_a_crash_between_writing_the_onnx_file_and_the_card_leaves_no_visible_version(
    tmp_path: Path, onnx_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path)

    def crash(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt("killed while writing the card")

    monkeypatch.setattr("models.registry.write_synced", crash)
    with pytest.raises(KeyboardInterrupt):
        registry.publish(onnx_file, make_card())
    assert registry.versions() == []
    # A leftover staging directory from a hard kill (no cleanup ran) is ignored too.
    staging = tmp_path / ".staging-dead"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"half")
    monkeypatch.undo()
    assert registry.versions() == []
    assert registry.publish(onnx_file, make_card()).version == "v1"


def test_a_version_directory_without_its_card_is_invisible(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "model.onnx").write_bytes(b"x")
    assert registry.versions() == []
    assert registry.publish(onnx_file, make_card()).version == "v2"


def test_verify_catches_a_replaced_onnx_file(tmp_path: Path, onnx_file: Path) -> None:
    registry = Registry(tmp_path)
    card = registry.publish(onnx_file, make_card())
    assert registry.verify(card.version) == card
    registry.onnx_path(card.version).write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match its card"):
        registry.verify(card.version)


def test_card_round_trips_through_json(tmp_path: Path) -> None:
    card = make_card(config={"steps": 10}, final_losses={"refiner": 0.5}, metrics={"gap_closed": 0.6})
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert json.loads(card.to_json())["io"]["layout"] == "NHWC"


def test_card_from_a_newer_schema_is_refused() -> None:
    data = make_card().to_dict()
    data["schema"] = 999
    with pytest.raises(ValueError, match="newer"):
        ModelCard.from_dict(data)


def test_seed_bundled_publishes_only_into_an_empty_registry(tmp_path: Path, onnx_file: Path) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "model.onnx").write_bytes(onnx_file.read_bytes())
    (bundled / "card.json").write_text(make_card(onnx_sha256=sha256_file(onnx_file)).to_json())
    registry = Registry(tmp_path / "models")
    seeded = registry.seed_bundled(bundled)
    assert seeded is not None and seeded.version == "v1"
    assert registry.seed_bundled(bundled) is None
    assert registry.versions() == ["v1"]


def test_registry_module_imports_neither_torch_nor_fastapi() -> None:
    import subprocess
    import sys

    code = "import models, sys; print(any(m in sys.modules for m in ('torch', 'fastapi')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "False"


def test_evaluations_recorded_after_publishing_show_in_the_card_without_changing_it(
    tmp_path: Path, onnx_file: Path
) -> None:
    registry = Registry(tmp_path)
    card = registry.publish(onnx_file, make_card(metrics={"at_publish": 1}))
    registry.add_metrics(card.version, {"gap_closed": 0.4})
    shown = registry.add_metrics(card.version, {"gap_closed": 0.6})
    assert shown.metrics["at_publish"] == 1
    assert [e["gap_closed"] for e in shown.metrics["evaluations"]] == [0.4, 0.6]
    assert shown.metrics["latest"]["gap_closed"] == 0.6
    assert registry.verify(card.version).onnx_sha256 == card.onnx_sha256
    assert json.loads((tmp_path / card.version / "card.json").read_text())["metrics"] == {"at_publish": 1}
