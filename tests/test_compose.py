"""docker-compose.yml and docker/: the services, volumes, healthchecks and commands a deployment relies on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.layout import DATA_DIR, JOBS_DIR, MODELS_DIR, RESULTS_DIR, STATE_USERS
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


def test_images_are_a_service_one_without_torch_and_a_cuda_trainer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    service_file = _instructions((ROOT / services["api"]["build"]["dockerfile"]).read_text())
    trainer_file = _instructions((ROOT / services["trainer"]["build"]["dockerfile"]).read_text())

    assert services["refine-worker"]["build"]["dockerfile"] == services["api"]["build"]["dockerfile"]
    assert "torch" not in service_file
    # The service installs the CUDA provider's libraries by default (the "gpu" extra), or none with EXTRAS=.
    assert _arg(service_file, "EXTRAS") == "gpu"
    assert 'RUN pip install ".${EXTRAS:+[${EXTRAS}]}"' in service_file
    assert set(_arg(trainer_file, "EXTRAS").split(",")) == {"train", "gpu"}
    assert 'RUN pip install ".[${EXTRAS}]"' in trainer_file
    assert "--index-url ${TORCH_INDEX_URL}" in trainer_file


def test_the_gpu_extra_brings_the_cuda_and_cudnn_libraries_onnxruntime_gpu_loads() -> None:
    gpu = re.search(r"^gpu = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert gpu is not None
    assert "onnxruntime-gpu[cuda,cudnn]" in gpu.group(1)


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile.service", "docker/Dockerfile.trainer"])
def test_every_image_puts_the_cuda_wheels_libraries_on_the_loader_path(dockerfile: str) -> None:
    # onnxruntime's CUDA provider library has no RUNPATH to the nvidia-* wheels' libraries.
    text = (ROOT / dockerfile).read_text()
    path = re.search(r"LD_LIBRARY_PATH=(\S+)", text)
    assert path is not None
    site = "/usr/local/lib/python3.11/site-packages"  # python:3.11-slim's, where pip installs
    assert "FROM python:3.11-slim" in text
    assert path.group(1).split(":") == [f"{site}/nvidia/cu13/lib", f"{site}/nvidia/cudnn/lib"]


def test_the_trainers_torch_and_onnxruntime_are_built_for_one_cuda_major(compose: dict[str, Any]) -> None:
    # Two CUDA majors in one process load two incompatible sets of CUDA libraries. The onnxruntime-gpu
    # here is the one the project is developed against; the images install the newest >= pyproject's pin.
    from onnxruntime.capi import build_and_package_info

    trainer_file = _instructions((ROOT / "docker/Dockerfile.trainer").read_text())
    indexes = [
        _arg(trainer_file, "TORCH_INDEX_URL"),
        compose["services"]["trainer"]["build"]["args"]["TORCH_INDEX_URL"],
    ]
    onnxruntime_major = getattr(build_and_package_info, "cuda_version", "").split(".")[0]
    if not onnxruntime_major:
        pytest.skip("this onnxruntime is not a CUDA build (the images install onnxruntime-gpu)")
    for index in indexes:
        build = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)", index)
        assert build is not None, f"{index} is not one of PyTorch's CUDA wheel indexes"
        assert build.group(1)[:-1] == onnxruntime_major, f"{index}: torch for CUDA {build.group(1)}"


@pytest.mark.parametrize(("service", "queue"), [("refine-worker", "refine"), ("trainer", "train")])
def test_every_worker_has_a_healthcheck_that_checks_its_own_queues(
    compose: dict[str, Any], service: str, queue: str
) -> None:
    check = compose["services"][service]["healthcheck"]["test"]

    assert check[0] == "CMD"
    args = build_parser().parse_args(check[2:])
    assert check[1] == "simgan" and (args.verb, args.queues, args.check) == ("worker", [queue], True)
    assert args.queues == build_parser().parse_args(compose["services"][service]["command"][1:]).queues


def test_job_timeouts_are_set_on_the_api_which_fixes_them_when_it_enqueues(compose: dict[str, Any]) -> None:
    # jobs.queue.enqueue gives each job its timeout from the enqueuing process's settings; a worker's
    # value would never be used.
    timeouts = {"SIMGAN_TRAIN_JOB_TIMEOUT", "SIMGAN_REFINE_JOB_TIMEOUT"}
    enqueue = (ROOT / "jobs" / "queue.py").read_text()
    assert (
        "timeout = settings.train_job_timeout if queue == TRAIN_QUEUE else settings.refine_job_timeout"
        in enqueue
    )

    assert timeouts <= set(compose["services"]["api"]["environment"])
    for worker in ("refine-worker", "trainer"):
        assert not timeouts & set(compose["services"][worker]["environment"])


PATH_ACCESSORS = {
    "models_path": MODELS_DIR,
    "data_path": DATA_DIR,
    "job_workdir": JOBS_DIR,
    "result_path": RESULTS_DIR,
}
"""Settings' accessors of the state directories (core/settings.py), each to its directory."""
PROCESS_CODE = {
    "serve": ["service"],
    "worker refine": ["jobs/refine.py"],
    "worker train": ["jobs/train.py", "trainer"],
}
"""The code each process runs that opens state: the API's package, each job function with what it calls."""


def test_every_state_directory_the_code_of_a_process_opens_is_declared_for_it() -> None:
    # STATE_USERS is what the mount test above checks compose against; this checks STATE_USERS against
    # the code, so a process that starts reading another directory fails here, not in production.
    assert set(PATH_ACCESSORS.values()) == set(STATE_USERS)
    for process, roots in PROCESS_CODE.items():
        files = [
            f
            for root in roots
            for f in ([ROOT / root] if root.endswith(".py") else (ROOT / root).rglob("*.py"))
        ]
        opened = {
            directory
            for f in files
            for accessor, directory in PATH_ACCESSORS.items()
            if re.search(rf"\.{accessor}\b", f.read_text())
        }
        assert opened, f"{process}: no state opened in {roots}"
        declared = {directory for directory, users in STATE_USERS.items() if process in users}
        assert opened <= declared, (
            f"{process} opens {sorted(opened - declared)}, which STATE_USERS does not give it"
        )


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


def _arg(dockerfile: str, name: str) -> str:
    """The default of build argument `name` (ARG name=value, quotes removed)."""
    found = re.search(rf"^ARG {name}=(.*)$", dockerfile, re.MULTILINE)
    assert found is not None, f"no ARG {name}"
    return found.group(1).strip().strip('"')
