"""Fixtures (pytest finds them here); everything else tests share is in helpers.py. Tests under
tests/integration/ are marked `integration` here: `make test-fast` runs tests/unit alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kfts.kubeflow import images

from helpers import (
    SHARED_DATA,
    built_image,
    container_engine,
    make_classification,
    write_csv,
)

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def engine() -> str:
    return container_engine()


@pytest.fixture(scope="session")
def component_image(engine) -> str:
    return built_image(engine, images.component_image())


@pytest.fixture(scope="session")
def predictor_image(engine) -> str:
    return built_image(engine, images.predictor_image())


@pytest.fixture(scope="session")
def docker_api(engine, tmp_path_factory):
    """A Docker API endpoint for kfp.local's DockerRunner: Docker's own, or Podman's API service on a socket
    of the test session's (DOCKER_HOST is set for the session, and the service stopped after it)."""
    if engine == "docker":
        yield os.environ.get("DOCKER_HOST", "")
        return
    import time

    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", f"unix://{socket}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
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


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A served InceptionTime (two stacked networks; a class name with a comma and a space), its series, and
    what `kfts predict` answers for them: {"model", "values", "expected", "tmp"}."""
    from client_matrix import Expected
    from helpers import LENGTH, tiny_inception_time

    tmp = tmp_path_factory.mktemp("it-serving")
    _, values = tiny_inception_time(
        n_per_class=8,
        length=LENGTH,
        classes=("a", "b", "c, quoted"),
        depth=3,
        models=2,
        epochs=2,
        batch_size=8,
        ensemble="stacked",
        save_to=tmp / "model",
    )
    # what kfts predict answers for these rows (rounded to float16, as every encoding can carry them)
    return {"model": tmp / "model", "values": values, "expected": Expected.of(tmp / "model", values), "tmp": tmp}
