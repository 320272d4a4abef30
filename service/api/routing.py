"""RedisRoute: the route class of the job routers, so a Redis that dies mid-request is a 503."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import redis
from fastapi import Request, Response
from fastapi.routing import APIRoute

from jobs import queue
from service.api.errors import problem


class RedisRoute(APIRoute):
    """Answers 503 with what to do when Redis fails in the middle of a request: RedisDep pinged
    it at the start, but it can die before the route's last command."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except redis.RedisError:
                settings = request.app.state.settings
                queue.mark_down(settings)
                error = queue.unavailable(settings.redis_url, settings.redis_recheck_seconds)
                return problem(503, str(error), {"Retry-After": str(error.retry_after)})

        return guarded
