"""Slow or stalled clients cannot hold a connection forever, and no answer names a directory of this
server: a body that stops arriving gets 408, headers that never finish get the connection closed,
and error messages say `models/v2/model.onnx`, not where SIMGAN_HOME is on this disk."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn

from core.settings import Settings, get_settings
from models import ModelCard, Registry
from service.api.server_paths import hide_paths, server_roots
from service.api.timeouts import TimedH11Protocol
from service.main import create_app
from service.redis_server import free_port
from tests.factories import image_file, random_images

if TYPE_CHECKING:
    from tests.service.conftest import Serve


@contextmanager
def uvicorn_server(settings: Settings) -> Iterator[int]:
    """The app under a real uvicorn with the product's HTTP protocol; yields its port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", http=TimedH11Protocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the test server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_shorter_than_its_content_length_gets_408_instead_of_holding_the_connection(
    make_settings: Callable[..., Settings], gray_model: ModelCard
) -> None:
    with (
        uvicorn_server(make_settings(body_timeout_seconds=0.5)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=20) as sock,
    ):
        sock.sendall(
            b"POST /refine HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"images": ['
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"SIMGAN_BODY_TIMEOUT_SECONDS" in answer


def test_headers_that_never_finish_get_the_connection_closed(
    make_settings: Callable[..., Settings], gray_model: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMGAN_HEADER_TIMEOUT_SECONDS", "0.5")  # read by the protocol, as under uvicorn
    get_settings.cache_clear()
    with (
        uvicorn_server(make_settings()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=20) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert read_all(sock) == b""  # closed by the server, long before the socket's 20 s
        # A client that sends its headers is answered as usual.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_all(other).startswith(b"HTTP/1.1 200")


def test_server_directories_are_replaced_by_what_they_are(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    roots = server_roots(settings)
    text = f"cannot load {settings.models_path.resolve()}/v2/model.onnx; member '/etc/x.png' is absolute"
    assert hide_paths(text, roots) == "cannot load models/v2/model.onnx; member '/etc/x.png' is absolute"


@pytest.mark.anyio
async def test_no_answer_names_where_simgan_home_is(
    make_settings: Callable[..., Settings],
    registry: Registry,
    gray_model: ModelCard,
    serve: Serve,
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not an onnx graph" * 10)
    registry.publish(garbage, replace(gray_model, version="", onnx_sha256=""))  # v2
    app = create_app(make_settings())
    async with serve(app) as client:
        await asyncio.to_thread(app.state.reloader.check)
        answers = [
            await client.get("/readyz"),
            await client.get("/models"),
            await client.post(
                "/refine",
                data={"model": "v2"},
                files=[("image", ("e.png", image_file(random_images(1, 8, 8)[0]), "image/png"))],
            ),
            await client.get("/models/v9"),
        ]
    for answer in answers:
        assert str(tmp_path) not in answer.text, answer.text
    assert "model v2 cannot serve" in answers[0].text
    assert answers[2].status_code == 422 and "model v2 cannot serve" in answers[2].json()["detail"]
