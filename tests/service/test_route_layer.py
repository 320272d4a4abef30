"""The route layer's shape: routes translate, everything else lives beside them.

Route modules define no dependency (service.api.deps), no schema (service.api.schemas) and no
error conversion (one handler per exception type in service.api.errors); every router is included
by service.main; and every JSON answer goes through a declared model, so the OpenAPI document
says what is sent.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.responses import Response

from core.settings import Settings
from service.main import create_app

ROUTES = Path(__file__).resolve().parents[2] / "service" / "api" / "routes"
ROUTE_MODULES = sorted(p for p in ROUTES.glob("*.py") if p.name != "__init__.py")


def _router(path: Path) -> APIRouter:
    router: APIRouter = importlib.import_module(f"service.api.routes.{path.stem}").router
    return router


@pytest.mark.parametrize("path", ROUTE_MODULES, ids=lambda p: p.stem)
def test_a_route_module_defines_no_dependency_schema_or_error_conversion(path: Path) -> None:
    tree = ast.parse(path.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}

    assert [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)] == [], (
        "schemas: service/api/schemas/"
    )
    assert "Depends" not in names, "dependencies: service/api/deps.py"
    assert sorted(names & {"HTTPException", "JSONResponse"}) == [], "raise; the handlers answer"


def test_every_route_of_every_route_module_is_in_the_app(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]

    for module in ROUTE_MODULES:
        for route in _router(module).routes:
            assert isinstance(route, APIRoute)
            assert (route.methods or set()) & {m.upper() for m in paths.get(route.path, {})}, (
                module.stem,
                route.path,
            )


@pytest.mark.parametrize("path", ROUTE_MODULES, ids=lambda p: p.stem)
def test_every_route_answers_through_a_declared_model_or_a_response_class(path: Path) -> None:
    undeclared = [
        route.path
        for route in _router(path).routes
        if isinstance(route, APIRoute)
        and route.response_model is None
        and route.status_code != 204
        and not (isinstance(route.response_class, type) and issubclass(route.response_class, Response))
    ]

    assert undeclared == []
