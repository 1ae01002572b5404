"""The predictor image as KServe runs it: the model mounted read-only at /mnt/models (where KServe's storage
initializer puts the storageUri), a read-only root filesystem, the image's own non-root user; called with
KServe's own clients and curl in every encoding (tests/client_matrix.py), answers equal to `kfts predict`.

The container shares the host network and binds 127.0.0.1 only (`kfts serve --host`)."""

from __future__ import annotations

import subprocess

import pytest

from kfts.cli import sample_data

from client_matrix import MODES, Expected, Target, check
from helpers import free_port, tiny_inception_time, tiny_lstm_ad, wait_ready

NAME = "kfts-model"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    _, values = tiny_inception_time(
        n_per_class=8, length=24, depth=3, models=2, epochs=2, save_to=root / "inception-time"
    )
    series = sample_data.waves(400)
    tiny_lstm_ad(series, save_to=root / "lstm-ad")
    rows = {"inception-time": values[:6], "lstm-ad": series[:60]}
    for model in root.iterdir():  # readable by the image's user, as a storage initializer leaves it
        model.chmod(0o755)
        for f in model.iterdir():
            f.chmod(0o644)
    return {name: (root / name, Expected.of(root / name, rows[name])) for name in rows}


@pytest.fixture(scope="module", params=["inception-time", "lstm-ad"])
def served(request, models, engine, predictor_image):
    model_dir, expected = models[request.param]
    http, grpc = free_port(), free_port()
    container = subprocess.run(
        [
            engine,
            "run",
            "-d",
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{model_dir}:/mnt/models:ro",
            predictor_image,
            "--model-dir",
            "/mnt/models",
            "--model-name",
            NAME,
            "--host",
            "127.0.0.1",
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        wait_ready(f"http://127.0.0.1:{http}", timeout=300)
        yield Target(http=f"http://127.0.0.1:{http}", grpc=f"127.0.0.1:{grpc}", model_name=NAME), expected, container
    except AssertionError:
        logs = subprocess.run([engine, "logs", container], capture_output=True, text=True).stdout
        raise AssertionError(f"the predictor container was not ready:\n{logs[-3000:]}") from None
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True)


@pytest.mark.parametrize("mode", MODES)
def test_the_predictor_container_answers_every_client_as_kfts_predict(served, mode):
    target, expected, _ = served
    check(mode, target, expected)


def test_the_predictor_container_runs_as_the_image_user(served, engine):
    *_, container = served
    user = subprocess.run([engine, "exec", container, "id", "-u"], capture_output=True, text=True, check=True)
    assert user.stdout.strip() == "1000"
