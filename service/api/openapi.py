"""The OpenAPI document as the server really answers: every error body is `{"detail": "..."}`.

FastAPI describes its own 422 as a list of validation errors (`HTTPValidationError`), but
service.api.errors answers every error, validation included, with the Problem body; and a JSON
body that cannot be parsed is FastAPI's 400, which it does not document. The document is rewritten
once, after FastAPI generates it, so the two never disagree (a schemathesis test holds them to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": PROBLEM_REF}}}


def describe_errors(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with FastAPI's validation-error schemas replaced by Problem, and the 400 of an
    unparsable JSON body added to every operation that takes one."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "422" in responses:
                schema = responses["422"].get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref", "").endswith("/HTTPValidationError"):
                    responses["422"] = _problem("The request does not match its schema; `detail` says where")
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content and "400" not in responses:
                responses["400"] = _problem("The body is not valid JSON")
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the rewritten document. FastAPI caches what it generates, and the
    rewrite changes that cached document in place and is idempotent, so this costs one walk per call."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return describe_errors(generate())

    app.openapi = openapi  # type: ignore[method-assign]
