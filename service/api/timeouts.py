"""Slow clients cannot hold a connection forever.

- Headers: a connection whose request headers are not complete within `header_timeout_seconds` of
  connecting (or of the previous answer) is closed (TimedH11Protocol, uvicorn's HTTP protocol).
- Body: a request whose body stops arriving for `body_timeout_seconds` (e.g. a Content-Length
  larger than what is sent) gets 408 (BodyTimeout, ASGI middleware).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import get_settings


class BodyTimeout:
    """ASGI middleware: each wait for the next piece of a request body lasts at most `seconds`."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # only waits for the body are timed, not a later wait for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
                complete = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            except TimeoutError:
                # An HTTPException: FastAPI passes it on even from its own body reading, and
                # service.api.errors answers it as {"detail": ...}.
                raise HTTPException(
                    408,
                    f"the request body stopped arriving for {self.seconds:g} s "
                    "(SIMGAN_BODY_TIMEOUT_SECONDS); send the whole body and a matching Content-Length",
                ) from None

        await self.app(scope, timed_receive, send)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = get_settings().header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # still no request line and headers
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the headers are in: the body has its own timeout (BodyTimeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same time for its headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
