"""Published refiners: list, inspect, download, and pin the one the service serves."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from models.card_text import card_markdown
from models.registry import RegistryError
from service.api.deps import AdminKey, RegistryDep, ReloaderDep
from service.api.responses import MODEL_NOT_FOUND
from service.api.schemas import Activation, ModelList, Problem

router = APIRouter(prefix="/models", tags=["models"])

VERSION_DOC = "A version (`v3`), `active` (what the service serves) or `latest` (the newest)."


@router.get("", summary="Published refiners and their model cards")
async def list_models(registry: RegistryDep, reloader: ReloaderDep) -> ModelList:
    try:
        active: str | None = registry.resolve("active")
    except RegistryError:  # nothing published yet: the list says so rather than failing
        active = None
    serving = reloader.current
    return ModelList(
        active=active,
        pinned=registry.pinned(),
        serving=serving.version if serving else None,
        # `unloadable`: why a service could not load it (null when it can); such a version is never active.
        models=[
            {**card.to_dict(), "unloadable": registry.unloadable(card.version)} for card in registry.list()
        ],
    )


@router.get("/{version}", summary="One model card", description=VERSION_DOC, responses=MODEL_NOT_FOUND)
async def get_model(version: str, registry: RegistryDep, reloader: ReloaderDep) -> dict[str, Any]:
    # A model card is the registry's own JSON document (models.card); it has no schema here.
    if version == "active" and reloader.current is not None:
        return reloader.current.card.to_dict()
    return registry.get(version).to_dict()


@router.get(
    "/{version}/card.md",
    summary="The model card for people (Markdown, Hugging Face layout)",
    description=VERSION_DOC + " The same text as README.md beside card.json in the registry, with "
    "links to the train job's pictures on this server.",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}, "description": "The card"}, **MODEL_NOT_FOUND},
)
async def get_model_card_text(version: str, registry: RegistryDep, request: Request) -> Response:
    card = await asyncio.to_thread(registry.get, version)
    text = card_markdown(card, base_url=str(request.base_url).rstrip("/"))
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.get(
    "/{version}/onnx",
    summary="Download the ONNX file",
    description=VERSION_DOC,
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **MODEL_NOT_FOUND},
)
async def download_onnx(version: str, registry: RegistryDep) -> FileResponse:
    resolved = registry.resolve(version)
    return FileResponse(
        registry.onnx_path(resolved),
        media_type="application/octet-stream",
        filename=f"simgan-refiner-{resolved}.onnx",
    )


@router.post(
    "/{version}/activate",
    summary="Pin the service to a version (`latest`: follow the newest again)",
    description="The model is loaded and warmed up before it is pinned; one that cannot serve is refused.",
    responses={**MODEL_NOT_FOUND, 422: {"model": Problem, "description": "The model cannot serve"}},
    dependencies=[AdminKey],  # changes what every client gets: not for a `refine` key
)
async def activate(version: str, reloader: ReloaderDep) -> Activation:
    refiner = await asyncio.to_thread(reloader.activate, version)
    return Activation(
        pinned=reloader.registry.pinned(),
        serving=refiner.version if refiner else None,
        provider=refiner.provider if refiner else None,
    )
