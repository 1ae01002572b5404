"""The images: build time and size of each, the predictor's cold start, and the CLI's start-up time.

Builds run `images/build.sh` with --no-cache (every layer built again, every package downloaded again) from a
wheel made first; the CUDA images only in full mode (several GB of PyPI's CUDA wheels). Cold start: from
`podman run` of the predictor image, with a small InceptionTime model mounted at /mnt/models, to the first
200 from /v2/health/ready. CLI start-up: `kfts --version`, median of 5 runs, in this venv for this checkout
and for commit fb93916 (before the command line stopped importing torch and kfp), and in the image.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "images"
BEFORE = "fb93916"


def section(quick: bool) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from kfts.kubeflow import images

    from helpers import container_engine

    engine = container_engine()
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-s", "wheel"], cwd=ROOT, check=True)
    lines = [
        "## Images",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
        f"Engine: {engine}.",
        "",
        "| image | build s (with its predictor) | size MB | torch |",
        "|---|---|---|---|",
    ]
    for variant in ("cpu",) if quick else ("cpu", "cuda"):
        start = time.perf_counter()
        subprocess.run(
            ["images/build.sh", variant],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "KFTS_BUILD_FLAGS": "" if quick else "--no-cache"},
        )
        seconds = time.perf_counter() - start
        gpu = variant == "cuda"
        torch = subprocess.run(
            [
                engine,
                "run",
                "--rm",
                "--network",
                "none",
                images.component_image(gpu),
                "python",
                "-c",
                "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for image in (images.component_image(gpu), images.predictor_image(gpu)):
            lines.append(f"| `{image}` | {seconds:.0f} | {_size_mb(engine, image):.0f} | {torch} |")
    lines += [
        "",
        f"Predictor cold start to ready: {_cold_start(engine, images.predictor_image()):.1f} s.",
        "",
        "| `kfts --version` | median s |",
        "|---|---|",
    ]
    for name, command, env in _cli_variants(engine, images.component_image()):
        lines.append(f"| {name} | {_median_seconds(command, env):.2f} |")
    return "\n".join(lines) + "\n"


def _size_mb(engine: str, image: str) -> float:
    size = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
    ).stdout
    return int(size) / 1e6


def _cold_start(engine: str, image: str) -> float:
    from kfts.algorithms.inception_time.estimator import InceptionTime, Params
    from kfts.cli.sample_data import classification
    from kfts.core.csvio import LabeledSeries

    model = WORK / "model"
    labels, values = classification(n_per_class=8, length=24)
    InceptionTime(Params(filters=4, depth=3, models=2, epochs=1), device="cpu", seed=0).fit(
        LabeledSeries(labels=labels, values=values)
    ).save(model)
    model.chmod(0o755)
    http, grpc = _free_port(), _free_port()
    start = time.perf_counter()
    container = subprocess.run(
        [
            engine,
            "run",
            "-d",
            "--rm",
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{model}:/mnt/models:ro",
            image,
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
        while time.perf_counter() - start < 300:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the predictor container was not ready within 300 s")
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_variants(engine: str, image: str):
    before = WORK / "before"
    if not before.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before), BEFORE], cwd=ROOT, check=True, capture_output=True
        )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    yield "this checkout, in the venv", [sys.executable, "-m", "kfts", "--version"], env
    # the old tree, ahead of the venv's editable install: its cli imported torch and kfp to build the parser
    yield (
        f"commit {BEFORE}, in the venv",
        [sys.executable, "-m", "kfts", "--version"],
        {**env, "PYTHONPATH": f"{before / 'src'}:{before}"},
    )
    yield (
        "in the component image (podman run included)",
        [engine, "run", "--rm", "--network", "none", image, "kfts", "--version"],
        env,
    )


def _median_seconds(command: list[str], env: dict) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=WORK)
        times.append(time.perf_counter() - start)
        if result.returncode != 0 or "kfts" not in result.stdout:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr[-500:]}")
    return statistics.median(times)
