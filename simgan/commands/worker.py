"""`simgan worker --queues train|refine [--burst]`: run queued jobs from the Redis at REDIS_URL.

One per GPU machine for training, as many as wanted for bulk refine; all share one Redis and
one model and data store (SIMGAN_MODEL_DIR, SIMGAN_DATA_DIR).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from jobs.queue import QUEUES as QUEUE_NAMES

if TYPE_CHECKING:
    from core.settings import Settings


def _queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUE_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"queues are {' and '.join(QUEUE_NAMES)} (comma-separated), got {text!r}"
        )
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run queued training or bulk refine jobs (needs REDIS_URL)",
        description=(
            "Run jobs from the Redis at REDIS_URL. Training jobs each run in a freshly spawned process "
            "(never a fork, so CUDA starts clean); a job whose worker dies is resumed from its last "
            "checkpoint by the next worker. SIGTERM or Ctrl-C: the running job stops at its next step "
            "and is requeued; a second signal kills it."
        ),
    )
    parser.add_argument(
        "--queues",
        type=_queues,
        required=True,
        metavar="QUEUES",
        help="train, refine, or train,refine (a worker with train runs every job in a spawned process)",
    )
    parser.add_argument("--burst", action="store_true", help="quit once the queues are empty")
    parser.add_argument(
        "--check",
        action="store_true",
        help="healthcheck: exit 0 when a worker of these queues on this host is alive (registered in "
        "Redis, recent heartbeat), else 1 with the reason; starts no worker",
    )
    parser.set_defaults(run=run)


def _wait_for_redis(url: str) -> object:
    import redis

    from jobs.queue import unavailable

    connection = redis.Redis.from_url(url)
    announced = False
    while True:
        try:
            connection.ping()
            return connection
        except (redis.ConnectionError, redis.TimeoutError):
            if not announced:
                print(f"simgan worker: {unavailable(url)}; waiting for it", file=sys.stderr, flush=True)
                announced = True
            time.sleep(1.0)


def _check(queues: list[str], settings: Settings) -> int:
    import redis

    from jobs.queue import unavailable
    from jobs.worker import unhealthy_reason

    connection = redis.Redis.from_url(settings.redis_url or "", socket_connect_timeout=5, socket_timeout=5)
    try:
        reason = unhealthy_reason(connection, queues, settings)
    except (redis.ConnectionError, redis.TimeoutError):
        reason = str(unavailable(settings.redis_url))
    if reason is not None:
        print(f"simgan worker --check: {reason}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    import logging

    from core.settings import get_settings
    from jobs.worker import build_worker

    settings = get_settings()
    if not settings.redis_url:
        print(
            "simgan worker: set REDIS_URL to the Redis the API uses (e.g. redis://localhost:6379/0); "
            "`simgan serve` without REDIS_URL starts its own workers",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return _check(args.queues, settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    connection = _wait_for_redis(settings.redis_url)
    worker = build_worker(args.queues, connection, settings)  # type: ignore[arg-type]
    worker.work(burst=args.burst, logging_level=settings.log_level.upper())
    return 0
