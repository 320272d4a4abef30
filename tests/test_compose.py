"""docker-compose.yml and docker/: the services, volumes, healthchecks and commands a deployment relies on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.layout import STATE_USERS
from simgan.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SIMGAN_SERVICES = ("api", "refine-worker", "trainer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_has_redis_api_refine_worker_and_trainer(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", *SIMGAN_SERVICES}


def test_redis_has_a_ping_healthcheck_and_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]

    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.startswith("redis:") for volume in redis["volumes"])
    assert "redis" in compose["volumes"]


@pytest.mark.parametrize("service", SIMGAN_SERVICES)
def test_simgan_services_wait_for_a_healthy_redis_and_use_it(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]

    assert spec["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert spec["environment"]["REDIS_URL"] == "redis://redis:6379/0"


@pytest.mark.parametrize("service", SIMGAN_SERVICES)
def test_simgan_services_share_the_models_and_data_volumes(compose: dict[str, Any], service: str) -> None:
    mounts = dict(volume.split(":", 1) for volume in compose["services"][service]["volumes"])

    assert mounts["models"] == "/var/lib/simgan/models"
    assert mounts["data"] == "/var/lib/simgan/data"
    assert compose["services"][service]["environment"]["SIMGAN_HOME"] == "/var/lib/simgan"
    assert {"models", "data"} <= set(compose["volumes"])


@pytest.mark.parametrize("service", SIMGAN_SERVICES)
def test_every_state_directory_a_service_uses_is_a_volume(compose: dict[str, Any], service: str) -> None:
    # What each process reads or writes under SIMGAN_HOME is declared once, beside the layout
    # (core.layout.STATE_USERS); a deployment that forgets one of them 404s or loses work.
    spec = compose["services"][service]
    process = _process(spec)
    mounts = dict(volume.split(":", 1) for volume in spec["volumes"])
    home = spec["environment"]["SIMGAN_HOME"]

    used = {directory for directory, users in STATE_USERS.items() if process in users}
    assert used, f"{service} runs {process!r}, which no state directory names"
    for directory in used:
        assert mounts.get(directory) == f"{home}/{directory}", f"{service} does not mount {directory}"
        assert directory in compose["volumes"]


def test_every_state_directory_is_used_by_some_service(compose: dict[str, Any]) -> None:
    processes = {_process(compose["services"][s]) for s in SIMGAN_SERVICES}
    assert all(set(users) <= processes for users in STATE_USERS.values())


@pytest.mark.parametrize(
    ("service", "verb", "queues"),
    [("api", "serve", None), ("refine-worker", "worker", ["refine"]), ("trainer", "worker", ["train"])],
)
def test_every_command_is_a_real_simgan_command(
    compose: dict[str, Any], service: str, verb: str, queues: list[str] | None
) -> None:
    command = compose["services"][service]["command"]

    assert command[0] == "simgan"
    args = build_parser().parse_args(command[1:])
    assert args.verb == verb
    assert getattr(args, "queues", None) == queues


def test_the_trainer_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["trainer"]["deploy"]["resources"]["reservations"]["devices"]

    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]


def test_images_are_a_slim_service_one_without_torch_and_a_cuda_trainer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    service_file = (ROOT / services["api"]["build"]["dockerfile"]).read_text()
    trainer_file = (ROOT / services["trainer"]["build"]["dockerfile"]).read_text()

    assert services["refine-worker"]["build"]["dockerfile"] == services["api"]["build"]["dockerfile"]
    assert "RUN pip install .\n" in service_file and "torch" not in _instructions(service_file)
    assert 'pip install ".[train]"' in trainer_file
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu" in trainer_file
    assert "--index-url ${TORCH_INDEX_URL}" in trainer_file


def test_every_environment_variable_is_explained_by_a_comment() -> None:
    lines = COMPOSE.read_text().splitlines()
    variable = re.compile(r"^\s+(REDIS_URL|SIMGAN_[A-Z_]+):")

    undocumented = [
        line.strip()
        for i, line in enumerate(lines)
        if variable.match(line) and not lines[i - 1].strip().startswith("#")
    ]

    assert undocumented == []


def _process(spec: dict[str, Any]) -> str:
    """A service's command as STATE_USERS names it: "serve", "worker refine", "worker train"."""
    args = build_parser().parse_args(spec["command"][1:])
    return " ".join([args.verb, *(getattr(args, "queues", None) or [])])


def _instructions(dockerfile: str) -> str:
    """The Dockerfile without its comments."""
    return "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile.service", "docker/Dockerfile.trainer"])
def test_every_image_copies_every_package_the_project_installs(dockerfile: str) -> None:
    # pyproject's package list is what `pip install .` looks for; a package left out of the image
    # installs nothing and the first import of it fails in production only.
    text = (ROOT / dockerfile).read_text()
    packages = re.search(r"include = \[([^\]]*)\]", (ROOT / "pyproject.toml").read_text())
    assert packages is not None
    for name in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert f"COPY {name} {name}" in text, f"{dockerfile} does not copy {name}/"
