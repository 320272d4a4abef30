from __future__ import annotations

from core.config_docs import config_help, config_model, config_table
from core.train_config import CONFIG_KEYS, TrainConfig


def test_the_openapi_model_has_every_key_with_its_type_default_range_and_description() -> None:
    schema = config_model().model_json_schema()

    assert list(schema["properties"]) == list(CONFIG_KEYS)
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop["description"], name
        assert prop["default"] == getattr(TrainConfig, name, None) or name == "history_size"
    assert schema["properties"]["steps"] | {} == {
        "default": 1000,
        "description": schema["properties"]["steps"]["description"],
        "minimum": 1,
        "title": "Steps",
        "type": "integer",
    }
    assert schema["properties"]["optimizer"]["enum"] == ["adam", "sgd"]
    assert schema["properties"]["ema_decay"]["exclusiveMaximum"] == 1
    assert schema["properties"]["refiner_lr"]["exclusiveMinimum"] == 0
    assert config_model()(steps=5).model_dump()["steps"] == 5  # a usable model, not only a schema


def test_help_and_readme_table_list_every_key_with_what_it_allows() -> None:
    help_lines, table_rows = config_help().splitlines(), config_table().splitlines()[2:]
    assert [line.split("=")[0].strip() for line in help_lines] == list(CONFIG_KEYS)
    assert [row.split("`")[1] for row in table_rows] == list(CONFIG_KEYS)
    assert "  ema_decay=0.99  (a number in [0, 1)) " in config_help()
    assert "| `optimizer` | choice | `adam` | one of adam, sgd |" in config_table()
