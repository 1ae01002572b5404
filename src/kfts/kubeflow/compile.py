"""The KFP pipelines by name, and their IR YAML for a cluster. Placement (GPUs, requests and limits, images,
the object store's Secret, retries, the checkpoint volume) is chosen when a pipeline is compiled: see
pipelines.common.Cluster (kfts.cli.pipeline.compile makes one from the placement flags).
"""

from __future__ import annotations

import os
from pathlib import Path

from kfts.core.errors import InputError


def pipeline_names() -> list[str]:
    """Every algorithm's pipeline (for those that have one) and its retraining pipeline: retrain-ALGORITHM."""
    from kfts.algorithms import ALGORITHMS

    return [a.id for a in ALGORITHMS.values() if a.pipeline_path] + [f"retrain-{a}" for a in ALGORITHMS]


def build_pipeline(name: str, cluster=None, *, fan_out: bool = False):
    """The pipeline function called `name` (pipeline_names()), for `cluster` (None: kfp.local)."""
    from kfts.algorithms import ALGORITHMS
    from kfts.kubeflow.pipelines import retraining

    if name not in pipeline_names():
        raise InputError(f"unknown pipeline {name!r}: choose {', '.join(pipeline_names())}")
    algorithm = ALGORITHMS[name.removeprefix("retrain-")]
    if fan_out and (name.startswith("retrain-") or not algorithm.fan_out):
        raise InputError(
            f"--fan-out trains ensemble members in parallel: only for "
            f"{', '.join(a.id for a in ALGORITHMS.values() if a.fan_out)}"
        )
    if name.startswith("retrain-"):
        return retraining.build(algorithm.id, cluster)
    return algorithm.pipeline()(cluster, **({"fan_out": True} if fan_out else {}))


def variants() -> dict[str, tuple[str, dict, bool]]:
    """The compiled IR committed under pipelines/compiled/: file name -> (pipeline, Cluster fields, fan_out):
    every algorithm's pipeline for CPUs and GPUs (and with members fanned out over GPUs), and its retraining."""
    from kfts.algorithms import ALGORITHMS

    files: dict[str, tuple[str, dict, bool]] = {}
    for a in ALGORITHMS.values():
        if a.pipeline_path:
            files[f"{a.id}.yaml"] = (a.id, {}, False)
            files[f"{a.id}-gpu.yaml"] = (a.id, {"gpus": 1}, False)
            if a.fan_out:
                files[f"{a.id}-fan-out-gpu.yaml"] = (a.id, {"gpus": 1}, True)
    for name in ALGORITHMS:
        files[f"retrain-{name}.yaml"] = (f"retrain-{name}", {}, False)
    return files


def compile_pipeline(name: str, output: str | os.PathLike, cluster=None, *, fan_out: bool = False) -> Path:
    from kfp import compiler

    from kfts.kubeflow.pipelines.common import Cluster

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(name, cluster or Cluster(), fan_out=fan_out), str(output))
    return output


def compile_all(output_dir: str | os.PathLike) -> list[Path]:
    from kfts.kubeflow.pipelines.common import Cluster

    return [
        compile_pipeline(name, Path(output_dir) / file, Cluster(**settings), fan_out=fan_out)
        for file, (name, settings, fan_out) in variants().items()
    ]


def compile_components(output_dir: str | os.PathLike) -> list[Path]:
    """Every component's YAML spec (components/ in the repository: `make compile`), for a pipeline written
    outside kfts: kfp.components.load_component_from_file(".../train.yaml") gives the same step."""
    from kfp import compiler

    from kfts.kubeflow import components

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in components.STEPS:
        paths.append(output_dir / f"{name}.yaml")
        compiler.Compiler().compile(getattr(components, name), str(paths[-1]))
    return paths
