"""No absolute server path in any answer a client gets: error bodies have this server's directories
replaced by what they are (`SIMGAN_HOME/models/v2/model.onnx` -> `models/v2/model.onnx`).

Lower layers write messages for people running the service, and some name files by their full path
(onnxruntime's load errors, a dataset store that cannot be written). Paths a client sent itself (an
archive member named `/etc/x.png`) are kept: only the server's own directories are replaced.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings


def server_roots(settings: Settings) -> list[tuple[str, str]]:
    """(absolute directory, what to show instead), longest first, so the most specific one wins."""
    named = [
        (settings.models_path, "models"),
        (settings.data_path, "data"),
        (settings.home, "SIMGAN_HOME"),
        (Path(sys.prefix), "<python>"),
        (Path(sys.base_prefix), "<python>"),
        (Path(tempfile.gettempdir()), "<tmp>"),
        (Path.cwd(), "."),
        (Path.home(), "~"),
    ]
    pairs = {}
    for path, label in named:
        for form in (str(path.absolute()), str(path.resolve())):
            if form not in ("/", "") and form not in pairs:
                pairs[form] = label
    return sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)


def hide_paths(text: str, roots: list[tuple[str, str]]) -> str:
    for root, label in roots:
        text = text.replace(root + "/", label + "/").replace(root, label)
    return text


class ServerPathsHidden:
    """ASGI middleware: JSON error answers (4xx, 5xx) with server directories replaced."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.roots = server_roots(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def guarded_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(
                    b"application/json"
                ):
                    start = message  # held until the body is complete, to rewrite it
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = self._rewrite(b"".join(chunks))
                kept = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                kept.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": kept})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, guarded_send)

    def _rewrite(self, body: bytes) -> bytes:
        try:
            value = json.loads(body)
        except ValueError:
            return body
        if isinstance(value, dict) and isinstance(value.get("detail"), str):
            value["detail"] = hide_paths(value["detail"], self.roots)
            return json.dumps(value).encode()
        return body
