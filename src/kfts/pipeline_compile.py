"""`kfts pipeline compile`: the KFP pipelines by name, and their IR YAML for a cluster. Placement (GPUs, requests
and limits, images, the object store's Secret, retries, the checkpoint volume) is chosen when a pipeline is
compiled, from the placement flags (cluster_from_args): see pipelines.common.Cluster. kfts.pipeline_submit
compiles the same way before it sends a pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

from kfts.deploy import parse_key_value, parse_kserve_version, parse_toleration
from kfts.errors import InputError


def pipeline_names() -> list[str]:
    """Every algorithm's pipeline (for those that have one) and its retraining pipeline: retrain-ALGORITHM."""
    from kfts.algorithms import ALGORITHMS
    return [a.id for a in ALGORITHMS.values() if a.pipeline_path] + [f"retrain-{a}" for a in ALGORITHMS]


def build_pipeline(name: str, cluster=None, *, fan_out: bool = False):
    """The pipeline function called `name` (pipeline_names()), for `cluster` (None: kfp.local)."""
    from kfts.algorithms import ALGORITHMS
    from kfts.pipelines import retraining
    if name not in pipeline_names():
        raise InputError(f"unknown pipeline {name!r}: choose {', '.join(pipeline_names())}")
    algorithm = ALGORITHMS[name.removeprefix("retrain-")]
    if fan_out and (name.startswith("retrain-") or not algorithm.fan_out):
        raise InputError(f"--fan-out trains ensemble members in parallel: only for "
                         f"{', '.join(a.id for a in ALGORITHMS.values() if a.fan_out)}")
    if name.startswith("retrain-"):
        return retraining.build(algorithm.id, cluster)
    return algorithm.pipeline()(cluster, **({"fan_out": True} if fan_out else {}))


def variants() -> dict[str, tuple[str, dict, bool]]:
    """The compiled IR committed under pipelines/compiled/: file name -> (pipeline, Cluster fields, fan_out):
    every algorithm's pipeline for CPUs and GPUs (and with members fanned out over GPUs), and its retraining."""
    from kfts.algorithms import ALGORITHMS
    files = {}
    for a in ALGORITHMS.values():
        if a.pipeline_path:
            files[f"{a.id}.yaml"] = (a.id, {}, False)
            files[f"{a.id}-gpu.yaml"] = (a.id, {"gpus": 1}, False)
            if a.fan_out:
                files[f"{a.id}-fan-out-gpu.yaml"] = (a.id, {"gpus": 1}, True)
    for a in ALGORITHMS:
        files[f"retrain-{a}.yaml"] = (f"retrain-{a}", {}, False)
    return files


def compile_pipeline(name: str, output: str | os.PathLike, cluster=None, *, fan_out: bool = False) -> Path:
    from kfp import compiler

    from kfts.pipelines.common import Cluster
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(name, cluster or Cluster(), fan_out=fan_out), str(output))
    return output


def compile_all(output_dir: str | os.PathLike) -> list[Path]:
    from kfts.pipelines.common import Cluster
    return [compile_pipeline(name, Path(output_dir) / file, Cluster(**settings), fan_out=fan_out)
            for file, (name, settings, fan_out) in variants().items()]


def cmd_compile(args) -> int:
    if args.pipeline is None:
        for path in compile_all(args.output_dir):
            print(f"compiled {path}")
        return 0
    output = args.output or Path(args.output_dir) / f"{args.pipeline}.yaml"
    print(f"compiled {compile_pipeline(args.pipeline, output, cluster_from_args(args), fan_out=args.fan_out)}")
    return 0


def cluster_from_args(args):
    from kfts.images import base_image
    from kfts.pipelines.common import Cluster
    cluster = Cluster(gpus=args.gpus, accelerator=args.accelerator, resources=resources_from_args(args.resources),
                      image=args.image or base_image(), storage_secret=args.storage_secret,
                      retries=args.retries, checkpoint_pvc=args.checkpoint_pvc, trainjob_nodes=args.trainjob_nodes,
                      trainjob_procs_per_node=args.trainjob_procs_per_node, trainjob_runtime=args.trainjob_runtime,
                      kserve_version=args.kserve_version, deployment_mode=args.deployment_mode,
                      deploy_timeout_minutes=args.deploy_timeout_minutes)
    if args.kserve_version:
        parse_kserve_version(args.kserve_version)
    if args.deploy_timeout_minutes <= 0:
        raise InputError(f"--deploy-timeout-minutes {args.deploy_timeout_minutes:g}: more than 0")
    if cluster.trainjob_nodes and args.fan_out:
        raise InputError("--trainjob-nodes trains one TrainJob; --fan-out trains members as separate tasks: "
                         "choose one (a TrainJob shares the members out over its processes)")
    if args.node_selector is not None:
        cluster.node_selector = dict(parse_key_value(s, "--node-selector") for s in args.node_selector)
    if args.toleration is not None:
        cluster.tolerations = [parse_toleration(s) for s in args.toleration]
    if min(cluster.gpus, cluster.retries, cluster.trainjob_nodes) < 0 or cluster.trainjob_procs_per_node < 1:
        raise InputError("--gpus, --retries and --trainjob-nodes must be at least 0, --trainjob-procs-per-node "
                         "at least 1")
    return cluster


def resources_from_args(specs: list[str] | None) -> dict:
    """--resources STEP=cpu:2,memory:8Gi,cpu_limit:4,memory_limit:8Gi (repeatable): each step's requests and
    limits over pipelines.common.default_resources(); what STEP `all` sets applies to every step, and what a
    step's own flag sets over that."""
    from dataclasses import replace

    from kfts.pipelines.common import STEPS, default_resources
    asked = {}
    for spec in specs or []:
        step, text = parse_key_value(spec, "--resources")
        if step != "all" and step not in STEPS:
            raise InputError(f"--resources {step}=...: no such step; choose all, {', '.join(STEPS)}")
        values = dict(item.partition(":")[::2] for item in text.split(","))
        if set(values) - {"cpu", "memory", "cpu_limit", "memory_limit"} or not all(values.values()):
            raise InputError(f"--resources {spec}: expected STEP=NAME:QUANTITY,... with NAME cpu, memory, "
                             "cpu_limit or memory_limit")
        asked.setdefault(step, {}).update(values)
    resources = default_resources()
    for step in STEPS:
        try:
            resources[step] = replace(resources[step], **{**asked.get("all", {}), **asked.get(step, {})})
        except InputError as e:
            raise InputError(f"--resources: step {step}: {e}") from None
    return resources
