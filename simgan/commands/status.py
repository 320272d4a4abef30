"""`simgan status`: where the service's Redis is, and what its queues, workers and jobs are doing.

The Redis is REDIS_URL when set, else the private one `simgan serve` started (its URL is in
SIMGAN_HOME/redis/url), so `rq info` and rq-dashboard can be pointed at it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="Redis URL, queues, workers, recent jobs and the active model",
        description="Show the Redis the service uses (REDIS_URL, or the private one of `simgan serve`, "
        "whose URL it wrote to SIMGAN_HOME/redis/url), its queues, workers and recent jobs, and the "
        "model the service refines with.",
    )
    parser.add_argument("--jobs", type=int, default=5, help="recent jobs to show per queue (default 5)")
    parser.add_argument("--json", action="store_true", help="print it all as one JSON object")
    parser.set_defaults(run=run)


def _model(settings: Any) -> dict[str, Any] | None:
    from models import Registry, RegistryError

    registry = Registry(settings.models_path)
    try:
        card = registry.get("active")
    except RegistryError:
        return None
    return {"version": card.version, "pinned": registry.pinned() is not None, "notes": card.notes}


def _redis(url: str, jobs: int) -> dict[str, Any]:
    import redis
    from rq import Queue, Worker

    from jobs import queue

    connection = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        connection.ping()
    except redis.RedisError as exc:
        return {"reachable": False, "error": str(exc)}
    workers = [
        {"name": w.name, "queues": w.queue_names(), "state": str(w.get_state())}
        for w in Worker.all(connection=connection)
    ]
    recent = {
        name: [
            {"id": r.id, "state": r.state.value, "progress": r.progress}
            for r in queue.list_jobs(connection, name, jobs)
        ]
        for name in queue.QUEUES
    }
    depths = queue.queue_depths(connection)
    for name in queue.QUEUES:
        depths[name]["failed"] = Queue(name, connection=connection).failed_job_registry.count
    return {"reachable": True, "queues": depths, "workers": workers, "jobs": recent}


def run(args: argparse.Namespace) -> int:
    from core.layout import REDIS_DIR
    from core.settings import get_settings
    from jobs.queue import public_url
    from service.redis_server import read_url, url_file

    settings = get_settings()
    url = settings.redis_url or read_url(settings.home / REDIS_DIR)
    origin = "REDIS_URL" if settings.redis_url else str(url_file(settings.home / REDIS_DIR))
    status: dict[str, Any] = {
        "redis_url": public_url(url) if url else None,
        "redis_url_from": origin,
        "model": _model(settings),
    }
    if url:
        status.update(_redis(url, args.jobs))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0 if status.get("reachable") else 1
    if not url:
        print(f"redis: none yet (REDIS_URL is unset and {origin} does not exist: start `simgan serve`)")
    else:
        shown = public_url(url)
        if not status["reachable"]:
            print(f"redis: {shown} (from {origin}) does not answer: is `simgan serve` running?")
        else:
            print(f"redis: {shown} (from {origin})")
            print(
                f'  rq info --url "$(cat {origin})"'
                if origin != "REDIS_URL"
                else '  rq info --url "$REDIS_URL"'
            )
            for name, counts in status["queues"].items():
                print(f"queue {name}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
            print(f"workers: {len(status['workers'])}")
            for worker in status["workers"]:
                print(f"  {worker['name']}: {', '.join(worker['queues'])} ({worker['state']})")
            for name, jobs in status["jobs"].items():
                print(f"recent {name} jobs: {len(jobs) or 'none'}")
                for job in jobs:
                    progress = json.dumps(job["progress"]) if job["progress"] else ""
                    print(f"  {job['id']} {job['state']} {progress}".rstrip())
    model = status["model"]
    if model is None:
        print("model: none published yet")
    else:
        how = "pinned" if model["pinned"] else "newest self-activating"
        print(f"model: {model['version']} ({how}) {model['notes']}".rstrip())
    return 0 if status.get("reachable") else 1
