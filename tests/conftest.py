"""Shared test helpers: the CLI as a user runs it, small generated data, and the shared data folder."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfts.kubeflow import images
from kfts.cli import sample_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_cli(*args, check: bool = False, timeout: float = 600, env: dict | None = None,
            **kwargs) -> subprocess.CompletedProcess:
    """`python -m kfts ARGS` in a subprocess (in `env`, by default this one's), as a user would run it; text
    output captured."""
    result = subprocess.run([sys.executable, "-m", "kfts", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**(env or os.environ), "PYTHONUNBUFFERED": "1"}, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"kfts {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def write_csv(path: Path, rows) -> Path:
    sample_data.write_csv(path, rows)
    return path


make_classification = sample_data.classification


@pytest.fixture
def classification_csv(tmp_path):
    """A small InceptionTime training file and its unlabeled twin: (train.csv, test_data.csv, labels)."""
    labels, values = make_classification()
    train = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(labels, values)))
    test = write_csv(tmp_path / "test_data.csv", values)
    return train, test, labels


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (CI puts ../shared beside the project)")
    return SHARED_DATA


# -- containers -----------------------------------------------------------------------------------------------
# The images are built by `make images` (a prerequisite of `make test`); container tests run them with Podman
# (or Docker where it answers) and never skip: a missing engine or image fails with what to do.

def container_engine() -> str:
    import shutil
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "images" / "containers.conf"))
        return "podman"
    pytest.fail("no container engine: install Podman (apt-get install podman buildah runc debootstrap; "
                ".ci/run does) or start Docker, then `make images`")


@pytest.fixture(scope="session")
def engine() -> str:
    return container_engine()


@pytest.fixture(scope="session")
def component_image(engine) -> str:
    return _built(engine, images.component_image())


@pytest.fixture(scope="session")
def predictor_image(engine) -> str:
    return _built(engine, images.predictor_image())


def _built(engine: str, image: str) -> str:
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.fail(f"image {image} is not built: run `make images` (make test does it first)")
    return image


@pytest.fixture(scope="session")
def docker_api(engine, tmp_path_factory):
    """A Docker API endpoint for kfp.local's DockerRunner: Docker's own, or Podman's API service on a socket
    of the test session's (DOCKER_HOST is set for the session, and the service stopped after it)."""
    if engine == "docker":
        yield os.environ.get("DOCKER_HOST", "")
        return
    import time
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time", "0", f"unix://{socket}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not socket.exists():
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            pytest.fail(f"podman system service did not start: {service.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{socket}"
    yield os.environ["DOCKER_HOST"]
    service.terminate()
    service.wait(timeout=30)
    if previous is None:
        os.environ.pop("DOCKER_HOST")
    else:
        os.environ["DOCKER_HOST"] = previous


# -- servers ----------------------------------------------------------------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, process=None, timeout: float = 300) -> None:
    """Until `base_url`/v2/health/ready answers 200; fails early if `process` (the server) exited."""
    import time
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base_url} was not ready within {timeout} s")


# -- Kubernetes schemas -----------------------------------------------------------------------------------------

SCHEMAS = ROOT.parent / "shared" / "schemas"


@functools.cache
def crd_validator(file: str, version: str):
    """A jsonschema validator for the OpenAPI v3 schema of `version` in the CRD ../shared/schemas/`file`
    (checked and built once: the schemas are large)."""
    import jsonschema
    import yaml
    if not (SCHEMAS / file).is_file():
        pytest.fail(f"{SCHEMAS / file} is not there (CI puts ../shared beside the project)")
    crd = yaml.load((SCHEMAS / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = entry["schema"]["openAPIV3Schema"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def predictions_csv(model, values, **options) -> str:
    """What `kfts predict` writes for `values`: the model's algorithm's batch prediction CSV."""
    from kfts.algorithms import of
    return of(model).predictions_csv(model, values, **options)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A served InceptionTime (two stacked networks; a class name with a comma and a space), its series, and
    what `kfts predict` answers for them: {"model", "values", "expected", "tmp"}."""
    from client_matrix import Expected
    from helpers import LENGTH, tiny_inception_time
    tmp = tmp_path_factory.mktemp("it-serving")
    _, values = tiny_inception_time(n_per_class=8, length=LENGTH, classes=("a", "b", "c, quoted"),
                                    depth=3, models=2, epochs=2, batch_size=8, ensemble="stacked",
                                    save_to=tmp / "model")
    # what kfts predict answers for these rows (rounded to float16, as every encoding can carry them)
    return {"model": tmp / "model", "values": values, "expected": Expected.of(tmp / "model", values), "tmp": tmp}
