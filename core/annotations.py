"""Annotations as clients send them: JSON objects passed through unchanged, with the JSON
extensions Python accepts (NaN, Infinity) refused, since no other client could read them back.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.errors import ClientError


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} does not fit a 64-bit float")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; use null or a string")


def loads_json(text: str | bytes) -> Any:
    """json.loads that keeps key order and refuses NaN/Infinity, which could not be sent back as JSON."""
    return json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)


def parse_annotations(text: str | None, count: int) -> list[Any]:
    """The multipart `annotations` field -> one value per image (None where none was sent).

    A JSON list is aligned with the images; any other JSON value is the annotation of the
    only image. Values are returned exactly as parsed, in order.
    """
    if text is None:
        return [None] * count
    try:
        value = loads_json(text)
    except ValueError as exc:
        raise ClientError(422, f"annotations is not valid JSON ({exc}); send a JSON object or list") from exc
    if isinstance(value, list):
        if len(value) != count:
            raise ClientError(
                422,
                f"annotations is a list of {len(value)} entries but the request has {count} image(s); "
                "send one entry per image, in the order of the images",
            )
        return value
    if count != 1:
        raise ClientError(
            422, f"the request has {count} images: send annotations as a JSON list with one entry per image"
        )
    return [value]
