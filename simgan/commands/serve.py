"""`simgan serve [--host H] [--port P]`: the whole service on one machine.

Without REDIS_URL: a private Redis (data in SIMGAN_HOME/redis), a train and a refine worker, and
the API; Ctrl-C stops all of them. With REDIS_URL: only the API (workers run elsewhere with
`simgan worker`).
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="start the service (API, workers and a private Redis unless REDIS_URL is set)",
        description=(
            "Start the HTTP API. Without REDIS_URL it also starts a private Redis server and one worker "
            "per queue (train, refine), and Ctrl-C stops them all; with REDIS_URL it starts only the API."
        ),
    )
    parser.add_argument("--host", help="address to bind (default SIMGAN_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default SIMGAN_PORT, 8000)")
    parser.set_defaults(run=run)


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost); 0.0.0.0 and :: are all."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from core.settings import get_settings

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if not settings.api_keys and not is_loopback(host):
        print(
            f"simgan serve: refusing to bind {host}: without API keys anyone who reaches the port could "
            "delete datasets, cancel jobs and activate models. Set SIMGAN_API_KEYS (e.g. "
            "'admin:<key>,refine:<key>', README \"Security\"), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if settings.redis_url:
        import uvicorn

        from jobs.queue import public_url

        logging.getLogger(__name__).info("API only; jobs go to Redis at %s", public_url(settings.redis_url))
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it
        # found: a no-op one makes a requested stop exit with 0 rather than die of the signal.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: None)
        import os

        from service.supervisor import api_environment

        os.environ.update(api_environment(settings))  # read by each API process's own Settings
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            http="service.api.timeouts:TimedH11Protocol",  # closes connections whose headers take too long
            host=host,
            port=port,
            log_level=settings.log_level,
            workers=settings.api_processes,
        )
        return 0

    from service.supervisor import HomeInUse, Supervisor, lock_home

    try:
        lock_home(settings.home)  # before anything starts: one serve (one private Redis) per home
    except HomeInUse as exc:
        print(f"simgan serve: {exc}", file=sys.stderr)
        return 1
    print(
        f"simgan serve: http://{host}:{port} (API, train and refine workers, private Redis); Ctrl-C stops all"
    )
    try:
        return Supervisor(settings, host, port).run()
    except RuntimeError as exc:  # the private Redis could not start; the message says why
        print(f"simgan serve: {exc}", file=sys.stderr)
        return 1
