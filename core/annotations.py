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


MAX_JSON_DEPTH = 32
"""Deepest nesting of lists and objects accepted in any JSON a client sends (annotations, sidecar
files, annotations.jsonl). Real annotations nest a few levels; a limit keeps every later step (the
decoder, pydantic, the answer's encoder) far from Python's recursion limit."""


class TooDeep(ValueError):
    """JSON nests deeper than MAX_JSON_DEPTH."""


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_depth(value: Any, what: str = "the JSON") -> Any:
    """`value` itself, or TooDeep naming the limit."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise TooDeep(f"{what} nests lists and objects deeper than {MAX_JSON_DEPTH} levels; flatten it")
    return value


def loads_json(text: str | bytes, what: str = "the JSON") -> Any:
    """json.loads that keeps key order, refuses NaN/Infinity (they could not be sent back as JSON) and
    refuses nesting deeper than MAX_JSON_DEPTH (TooDeep, a ValueError)."""
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except RecursionError:  # the C decoder stops cleanly at the interpreter's recursion limit
        raise TooDeep(
            f"{what} nests lists and objects deeper than {MAX_JSON_DEPTH} levels; flatten it"
        ) from None
    return check_depth(value, what)


def parse_annotations(text: str | None, count: int) -> list[Any]:
    """The multipart `annotations` field -> one value per image (None where none was sent).

    A JSON list is aligned with the images; any other JSON value is the annotation of the
    only image. Values are returned exactly as parsed, in order.
    """
    if text is None:
        return [None] * count
    try:
        value = loads_json(text, "annotations")
    except TooDeep as exc:
        raise ClientError(422, str(exc)) from exc
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
