"""`kfts pipeline compile`, and the placement flags as a pipelines.common.Cluster (cluster_from_args), which
`kfts pipeline submit` compiles with too."""

from __future__ import annotations

import math
from pathlib import Path

from kfts.core.errors import InputError
from kfts.kubeflow.compile import compile_all, compile_components, compile_pipeline
from kfts.kubeflow.deploy import parse_key_value, parse_kserve_version, parse_node_selector, parse_toleration


def cmd_compile(args) -> int:
    if args.pipeline is None:
        if args.output is not None:
            raise InputError("--output is the file of one PIPELINE: name it, or leave --output out for every variant")
        for path in compile_all(args.output_dir):
            print(f"compiled {path}")
        for path in compile_components(args.components_dir) if args.components_dir else []:
            print(f"compiled {path}")
        return 0
    cluster = cluster_from_args(args)  # a placement flag's mistake is named before the output's
    output = Path(args.output_dir) / f"{args.pipeline}.yaml" if args.output is None else Path(args.output)
    if output.suffix not in (".yaml", ".yml") or output.is_dir():  # KFP writes YAML to such a name only
        raise InputError(f"--output {str(output)!r}: give the path of a .yaml file (the pipeline's IR is YAML)")
    print(f"compiled {compile_pipeline(args.pipeline, output, cluster, fan_out=args.fan_out)}")
    return 0


def cluster_from_args(args):
    from kfts.kubeflow.images import base_image
    from kfts.kubeflow.pipelines.common import Cluster

    cluster = Cluster(
        gpus=args.gpus,
        accelerator=args.accelerator,
        resources=resources_from_args(args.resources),
        image=args.image or base_image(),
        storage_secret=args.storage_secret,
        retries=args.retries,
        checkpoint_pvc=args.checkpoint_pvc,
        trainjob_nodes=args.trainjob_nodes,
        trainjob_procs_per_node=args.trainjob_procs_per_node,
        trainjob_runtime=args.trainjob_runtime,
        kserve_version=args.kserve_version,
        deployment_mode=args.deployment_mode,
        deploy_timeout_minutes=args.deploy_timeout_minutes,
    )
    if args.kserve_version:
        parse_kserve_version(args.kserve_version)
    if not 0 < args.deploy_timeout_minutes < math.inf:  # nan too: the IR cannot hold it
        raise InputError(f"--deploy-timeout-minutes {args.deploy_timeout_minutes:g}: a number of minutes above 0")
    if cluster.trainjob_nodes and args.fan_out:
        raise InputError(
            "--trainjob-nodes trains one TrainJob; --fan-out trains members as separate tasks: "
            "choose one (a TrainJob shares the members out over its processes)"
        )
    if args.node_selector is not None:
        cluster.node_selector = dict(parse_node_selector(s) for s in args.node_selector)
    if args.toleration is not None:
        cluster.tolerations = [parse_toleration(s) for s in args.toleration]
    if min(cluster.gpus, cluster.retries, cluster.trainjob_nodes) < 0 or cluster.trainjob_procs_per_node < 1:
        raise InputError(
            "--gpus, --retries and --trainjob-nodes must be at least 0, --trainjob-procs-per-node at least 1"
        )
    return cluster


def resources_from_args(specs: list[str] | None) -> dict:
    """--resources STEP=cpu:2,memory:8Gi,cpu_limit:4,memory_limit:8Gi (repeatable): each step's requests and
    limits over pipelines.common.default_resources(); what STEP `all` sets applies to every step, and what a
    step's own flag sets over that."""
    from dataclasses import replace

    from kfts.kubeflow.pipelines.common import STEPS, default_resources

    asked: dict[str, dict[str, str]] = {}
    for spec in specs or []:
        step, text = parse_key_value(spec, "--resources")
        if step != "all" and step not in STEPS:
            raise InputError(f"--resources {step}=...: no such step; choose all, {', '.join(STEPS)}")
        values = dict(item.partition(":")[::2] for item in text.split(","))
        if set(values) - {"cpu", "memory", "cpu_limit", "memory_limit"} or not all(values.values()):
            raise InputError(
                f"--resources {spec}: expected STEP=NAME:QUANTITY,... with NAME cpu, memory, cpu_limit or memory_limit"
            )
        asked.setdefault(step, {}).update(values)
    resources = default_resources()
    for step in STEPS:
        try:
            resources[step] = replace(resources[step], **{**asked.get("all", {}), **asked.get(step, {})})
        except InputError as e:
            raise InputError(f"--resources: step {step}: {e}") from None
    return resources
