"""Documents made from the training config's fields: the pydantic model in OpenAPI, the
`simgan train --help` list and the README table. Each is rendered from `core.train_config`, so
none can drift from the keys the trainer reads."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from core.train_config import CHOICES, CONFIG_KEYS, DEFAULTS, METADATA, TYPES, allowed, value_kind

if TYPE_CHECKING:
    import pydantic


@cache
def config_model() -> type[pydantic.BaseModel]:
    """The config as a pydantic model for OpenAPI: every key typed, with its default, range and line.

    Requests are still checked by `TrainConfig.from_overrides` (its messages name the nearest key and
    say what is allowed); this model is what clients read.
    """
    import pydantic  # here: the CLI and the trainer need none of it

    definitions: dict[str, Any] = {}
    for name in CONFIG_KEYS:
        bounds = {k: v for k, v in METADATA[name].items() if k in ("ge", "gt", "lt", "le")}
        definitions[name] = (
            TYPES[name],
            pydantic.Field(DEFAULTS[name], description=METADATA[name]["description"], **bounds),
        )
    return pydantic.create_model(
        "TrainConfig",
        __config__=pydantic.ConfigDict(extra="forbid", title="TrainConfig"),
        __doc__="Training config: any subset of these keys; the others keep their defaults.",
        **definitions,
    )


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _type_name(name: str) -> str:
    kind = value_kind(name)
    text = "choice" if name in CHOICES else {int: "integer", float: "number", bool: "boolean"}[kind]
    return f"{text} or null" if name == "history_size" else text


def config_help() -> str:
    """One line per key for `simgan train --help`."""
    return "\n".join(
        f"  {name}={_shown(DEFAULTS[name])}  ({allowed(name)}) {METADATA[name]['description']}"
        for name in CONFIG_KEYS
    )


def config_table() -> str:
    """The README's table of config keys."""
    rows = ["| key | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for name in CONFIG_KEYS:
        rows.append(
            f"| `{name}` | {_type_name(name)} | `{_shown(DEFAULTS[name])}` | {allowed(name)} | "
            f"{METADATA[name]['description']} |"
        )
    return "\n".join(rows) + "\n"
