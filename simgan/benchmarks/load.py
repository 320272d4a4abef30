"""The load of the HTTP bench: prepared POST /refine requests sent over keep-alive connections.

Each client sends a request and reads its whole answer before it sends the next, on a bare
asyncio protocol (uvloop where installed), so that the client costs as little CPU as it can:
it shares the machine's cores with the server it measures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time

import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def build_request(form: str, pngs: list[bytes]) -> bytes:
    """The whole HTTP/1.1 request (head and body) for POST /refine in `form`."""
    if form == "raw":
        (body,) = pngs
        headers = {"Content-Type": "image/png", "Accept": "image/png"}
    elif form == "json":
        images = [{"data": base64.b64encode(p).decode(), "annotations": {"i": i}} for i, p in enumerate(pngs)]
        body = json.dumps({"images": images}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
    else:
        boundary = "simganbenchboundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + p
            + b"\r\n"
            for i, p in enumerate(pngs)
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        headers["Accept"] = "image/png" if len(pngs) == 1 else "application/json"
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "bench", **headers}.items())
    return f"POST /refine HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive client connection: send a request, collect its answer, repeat."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.needed = -1
        self.head_end = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head_end < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            head = bytes(self.buffer[:end]).lower()
            start = head.index(b"content-length:") + 15
            self.needed = self.head_end + int(head[start : head.index(b"\r\n", start)])
        if len(self.buffer) >= self.needed and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(bytes(self.buffer[: self.needed]))
            del self.buffer[: self.needed]
            self.head_end, self.needed = -1, -1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the server closed the connection ({exc})"))

    async def exchange(self, request: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)  # type: ignore[attr-defined]
        return await self.waiter


async def _drive(port: int, request: bytes, clients: int, total: int) -> tuple[float, list[bytes]]:
    """Send `total` requests over `clients` connections; (seconds, a few answers to check)."""
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, "127.0.0.1", port))[1] for _ in range(clients)]
    remaining = [total]
    samples: list[bytes] = []

    async def client(connection: _Connection) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            answer = await connection.exchange(request)
            if not answer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"POST /refine answered {answer[:300]!r}")
            if len(samples) < 4:
                samples.append(answer)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.transport.close()
    return seconds, samples


def drive(port: int, request: bytes, clients: int, total: int) -> tuple[float, list[bytes]]:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(_drive(port, request, clients, total))
    return asyncio.run(_drive(port, request, clients, total))


def refined_pixels(answer: bytes, form: str) -> list[np.ndarray]:
    """The refined images of one answer (for the parity check)."""
    from PIL import Image

    body = answer[answer.index(b"\r\n\r\n") + 4 :]
    if body.startswith(b"\x89PNG"):
        files = [body]
    else:
        files = [base64.b64decode(item["data"]) for item in json.loads(body)["images"]]
    return [np.asarray(Image.open(io.BytesIO(f))) for f in files]
