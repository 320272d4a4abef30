"""Turn the service's exceptions into `{"detail": "..."}` answers with the right status code.

One handler per exception type, installed by `install_error_handlers`; routes raise and never
convert. core.errors.ClientError is the one type for input a client must fix (it carries its
status); the others are the lower layers' own exceptions, each with the status it always means.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from core.errors import ClientError
from jobs.queue import JobAlreadyFinished, JobNotFound, RedisUnavailable
from models.registry import ModelNotFound, RegistryError
from service.api.auth import AuthError, auth_error_response
from service.batching import BatcherStopped, QueueFull
from service.reloader import ModelLoadError, NotReady

NOT_READY_RETRY_AFTER = 5
"""Seconds a client is told to wait while no model is loaded."""


def problem(status_code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def describe_validation(exc: RequestValidationError) -> str:
    """Pydantic's error list as one sentence per field: `body.images.0.data: Field required`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


async def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return auth_error_response(exc)


async def _client_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientError)
    return problem(exc.status_code, exc.detail)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem(404, str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return problem(409, str(exc))


async def _load_error(request: Request, exc: Exception) -> JSONResponse:
    return problem(422, f"{exc}; publish a working model or name another version")


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RedisUnavailable)
    return problem(503, str(exc), {"Retry-After": str(exc.retry_after)})


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    return problem(503, str(exc), {"Retry-After": str(NOT_READY_RETRY_AFTER)})


async def _queue_full(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueueFull)
    return problem(503, str(exc), {"Retry-After": str(exc.retry_after)})


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem(422, describe_validation(exc))


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists at this path (HEAD with GET). Starlette's 405 names
    only the first route matching the path, but GET /datasets and POST /datasets are two routes."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations if method.upper() in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
        detail = f"{request.method} is not served at {request.url.path}; use {headers['Allow']}"
        return problem(405, detail, headers)
    return problem(exc.status_code, str(exc.detail), headers or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so the server logs the traceback once.
    return problem(500, f"the service failed on this request ({type(exc).__name__}); see the service log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(AuthError, _auth_error)
    # ModelNotFound is a RegistryError; any RegistryError reaching a route is a bad version name.
    app.add_exception_handler(ModelNotFound, _not_found)
    app.add_exception_handler(RegistryError, _not_found)
    app.add_exception_handler(ModelLoadError, _load_error)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(BatcherStopped, _not_ready)  # the service is stopping: come back soon
    # The job queue's: no such job, cancelling one that ended, no Redis (none configured, or down).
    app.add_exception_handler(JobNotFound, _not_found)
    app.add_exception_handler(JobAlreadyFinished, _conflict)
    app.add_exception_handler(RedisUnavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
