"""CLI commands `kfts serve` and `kfts deploy render` (registered through kfts.cli.COMMAND_MODULES)."""

from __future__ import annotations

from kfts.core.errors import InputError
from kfts.kubeflow.deploy import DEPLOYMENT_MODES, RESOURCES, parse_key_value, parse_node_selector, parse_toleration

KINDS = ("InferenceService", "ClusterServingRuntime", "ServingRuntime", "TrainJob", "ClusterTrainingRuntime")


def register(commands) -> None:
    serve = commands.add_parser("serve", help="serve a model artifact with KServe (V1, V2 REST and gRPC, CSV)")
    serve.add_argument(
        "--model-dir",
        default="/mnt/models",
        help="the model artifact (default /mnt/models, where KServe puts the storageUri)",
    )
    serve.add_argument("--model-name", default="model", help="the NAME in /v1/models/NAME:predict")
    serve.add_argument(
        "--host",
        help="the address to listen on, e.g. 127.0.0.1 (default: all addresses, as KServe: "
        "0.0.0.0 for HTTP, [::] for gRPC)",
    )
    serve.add_argument("--http-port", type=int, default=8080)
    serve.add_argument("--grpc-port", type=int, default=8081)
    serve.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    serve.add_argument(
        "--max-batch-size",
        type=int,
        default=64,
        help="inception-time: most series that concurrent requests share one model call",
    )
    serve.add_argument(
        "--max-batch-wait-ms", type=float, default=2.0, help="inception-time: how long a batch waits for more requests"
    )
    serve.add_argument(
        "--max-payload-mb",
        type=float,
        default=16.0,
        help="larger request bodies get 413 (REST) or RESOURCE_EXHAUSTED (gRPC)",
    )
    serve.add_argument(
        "--max-inflight-mb",
        type=float,
        help="MiB of request bodies answered at once; more get 503 with Retry-After (gRPC: "
        "UNAVAILABLE) (default: what the container's memory limit allows, deploy/SERVING.md)",
    )
    serve.add_argument(
        "--body-timeout-s",
        type=float,
        default=10.0,
        help="a request body that goes this long without a byte, or comes slower than 64 KiB/s on average once "
        "this long has passed since its first byte, gets 408 and gives back its share of --max-inflight-mb "
        "(default 10)",
    )
    serve.set_defaults(func=cmd_serve)

    deploy = commands.add_parser("deploy", help="Kubernetes manifests for serving")
    actions = deploy.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render",
        help="write a KServe InferenceService for a model artifact, or the "
        "kfts ServingRuntime it uses, or a Kubeflow Trainer TrainJob and "
        "the kfts ClusterTrainingRuntime it runs on (--kind)",
    )
    render.add_argument(
        "--kind",
        default="InferenceService",
        choices=KINDS,
        help="InferenceService (default); ClusterServingRuntime, once per cluster for the model "
        "format kfts; ServingRuntime, the same in --namespace; TrainJob; or "
        "ClusterTrainingRuntime, once per cluster for TrainJobs (default name kfts-torch)",
    )
    render.add_argument(
        "--name",
        help="InferenceService: its name, also the model name (required); runtimes: "
        "default kfts, or kfts-cuda with --gpu",
    )
    render.add_argument("--model-uri", help="InferenceService: the model artifact's URI (gs://, s3://, pvc://...)")
    render.add_argument(
        "--runtime",
        help="InferenceService: the ServingRuntime to use (default: KServe picks the "
        "kfts runtime; with --gpu kfts-cuda)",
    )
    render.add_argument(
        "--container",
        action="store_true",
        help="InferenceService: run the predictor image as a custom container, with no ServingRuntime",
    )
    render.add_argument(
        "--image",
        help="the predictor image of a runtime or --container (default: what `make "
        "images` tags, $KFTS_IMAGE-predictor, or $KFTS_IMAGE-predictor-cuda with "
        "--gpu)",
    )
    render.add_argument(
        "--gpu", action="store_true", help="ask for GPUs and schedule on the GPU node pool (runtimes: the CUDA runtime)"
    )
    render.add_argument("--gpus", type=int, help="InferenceService: GPUs per replica with --gpu (default 1)")
    render.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node label the pods need (repeatable), e.g. cloud.google.com/gke-nodepool=gpu",
    )
    render.add_argument(
        "--toleration",
        action="append",
        default=None,
        metavar="KEY[=VALUE][:EFFECT]",
        help="taint to tolerate (repeatable); with --gpu the default is nvidia.com/gpu",
    )
    render.add_argument("--min-replicas", type=int, default=1)
    render.add_argument("--max-replicas", type=int, default=1)
    render.add_argument(
        "--deployment-mode",
        choices=DEPLOYMENT_MODES,
        help="KServe's serving.kserve.io/deploymentMode: Standard (HTTP and gRPC exposed) or "
        "Knative (one port); RawDeployment and Serverless are the same modes' names before "
        "KServe 0.16 (default: the cluster's, HTTP only)",
    )
    render.add_argument(
        "--kserve-version",
        metavar="X.Y",
        help="the cluster's KServe release: before 0.16 the deployment mode is written "
        "RawDeployment or Serverless, from 0.16 Standard or Knative (default)",
    )
    render.add_argument(
        "--canary-traffic-percent",
        type=int,
        metavar="1-99",
        help="InferenceService under Knative: that share of the traffic to this model, the rest "
        "to the last one that had it all",
    )
    render.add_argument(
        "--expose-grpc", action="store_true", help="InferenceService under Knative: expose gRPC (8081) instead of HTTP"
    )
    render.add_argument("--namespace")
    render.add_argument(
        "--cpu",
        help="requests and limits: of the predictor (default 1), or of each training process of a TrainJob (default 2)",
    )
    render.add_argument("--memory", help="likewise (default 2Gi; TrainJob: 8Gi per process)")
    render.add_argument("--service-account", help="InferenceService, TrainJob: the pods' service account")
    render.add_argument(
        "--storage-secret",
        help="InferenceService, TrainJob: the Secret with the object-store "
        "identity (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_ENDPOINT_URL...; deploy/SERVING.md)",
    )
    render.add_argument("--output", help="write the YAML here instead of stdout")
    train = render.add_argument_group(
        "--kind TrainJob: training on Kubeflow Trainer (kfts.kubeflow.trainjob); --name, "
        "--namespace, --image, --cpu, --memory and --model-uri (where the model "
        "goes) as above"
    )
    train.add_argument("--algorithm", help="inception-time or lstm-ad")
    train.add_argument("--train", help="training CSV URI every node reads")
    train.add_argument("--valid", default="", help="validation CSV URI")
    train.add_argument("--nodes", type=int, default=1, help="training nodes (numNodes, default 1)")
    train.add_argument(
        "--procs-per-node", type=int, default=1, help="torchrun processes per node (default 1; with GPUs one per GPU)"
    )
    train.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (default 0: CPU)")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a hyperparameter")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--training-runtime",
        default="kfts-torch",
        help="the ClusterTrainingRuntime (default kfts-torch: --kind ClusterTrainingRuntime)",
    )
    train.add_argument(
        "--checkpoint-pvc",
        help="a ReadWriteMany claim where training keeps its state after every epoch, so that restarted nodes resume",
    )
    render.set_defaults(func=cmd_deploy_render)


def cmd_serve(args) -> None:
    from kfts.serving.server import serve

    serve(
        args.model_dir,
        model_name=args.model_name,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms,
        max_payload_mb=args.max_payload_mb,
        max_inflight_mb=args.max_inflight_mb,
        body_timeout_s=args.body_timeout_s,
    )


def cmd_deploy_render(args) -> None:
    from kfts.core.artifact import atomic_file
    from kfts.kubeflow.deploy import to_yaml
    from kfts.kubeflow.trainjob import PER_PROCESS, RUNTIME, render_training_runtime

    if args.gpus is not None and (args.kind != "InferenceService" or not args.gpu):
        raise InputError("--gpus goes with --gpu, for an InferenceService (a TrainJob takes --gpus-per-node)")
    defaults = PER_PROCESS if args.kind == "TrainJob" else RESOURCES
    args.cpu, args.memory = args.cpu or defaults["cpu"], args.memory or defaults["memory"]
    if args.kind == "TrainJob":
        manifest = _trainjob(args)
    elif args.kind == "ClusterTrainingRuntime":
        _refuse(args, [*_SERVING_ONLY, "--namespace", "--deployment-mode"])
        manifest = render_training_runtime(name=args.name or RUNTIME, image=args.image, gpu=args.gpu)
    elif args.kind != "InferenceService":
        if args.kind == "ServingRuntime" and not args.namespace:
            raise InputError("--kind ServingRuntime needs --namespace (a ClusterServingRuntime has none)")
        _refuse(args, _SERVING_ONLY)
        manifest = _serving_runtime(args)
    else:
        manifest = _inference_service(args)
    text = to_yaml(manifest)
    if args.output is None:
        print(text, end="")
        return
    with atomic_file(args.output) as f:
        f.write(text)
    print(f"{manifest['kind']} {manifest['metadata']['name']} written to {args.output}")


# the InferenceService flags, which no other kind takes
_SERVING_ONLY = [
    "--model-uri",
    "--runtime",
    "--container",
    "--expose-grpc",
    "--node-selector",
    "--toleration",
    "--service-account",
    "--storage-secret",
    "--kserve-version",
    "--canary-traffic-percent",
]


def _refuse(args, flags: list[str]) -> None:
    """A flag given for a kind that has no use for it is a mistake: say so rather than drop it."""
    for flag in flags:
        if getattr(args, flag[2:].replace("-", "_")):
            raise InputError(f"{flag} does not apply to --kind {args.kind}")


def _serving_runtime(args) -> dict:
    from kfts.kubeflow.deploy import render_serving_runtime
    from kfts.kubeflow.images import predictor_image

    return render_serving_runtime(
        image=args.image or predictor_image(args.gpu),
        gpu=args.gpu,
        name=args.name,
        namespace=args.namespace if args.kind == "ServingRuntime" else None,
        deployment_mode=args.deployment_mode,
        cpu=args.cpu,
        memory=args.memory,
    )


def _inference_service(args) -> dict:
    from kfts.kubeflow.deploy import render_inference_service
    from kfts.kubeflow.images import predictor_image

    for flag, value in (("--name", args.name), ("--model-uri", args.model_uri)):
        if not value:
            raise InputError(f"{flag} is required for an InferenceService")
    if args.image and not args.container:
        raise InputError(
            "--image goes with --container: an InferenceService for the kfts ServingRuntime runs the runtime's image"
        )
    return render_inference_service(
        name=args.name,
        model_uri=args.model_uri,
        image=(args.image or predictor_image(args.gpu)) if args.container else None,
        runtime=args.runtime,
        gpu=args.gpu,
        gpus=1 if args.gpus is None else args.gpus,
        node_selector=dict(parse_node_selector(s) for s in args.node_selector) or None,
        tolerations=[parse_toleration(t) for t in args.toleration] if args.toleration is not None else None,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        namespace=args.namespace,
        cpu=args.cpu,
        memory=args.memory,
        service_account=args.service_account,
        storage_secret=args.storage_secret,
        deployment_mode=args.deployment_mode,
        kserve_version=args.kserve_version,
        expose_grpc=args.expose_grpc,
        canary_traffic_percent=args.canary_traffic_percent,
    )


def _trainjob(args) -> dict:
    from kfts.jobs.train import make_params
    from kfts.kubeflow.trainjob import render_trainjob

    for flag, value in (
        ("--name", args.name),
        ("--algorithm", args.algorithm),
        ("--train", args.train),
        ("--model-uri", args.model_uri),
    ):
        if not value:
            raise InputError(f"{flag} is required for a TrainJob")
    settings = dict(parse_key_value(s, "--set") for s in args.set)
    make_params(args.algorithm, settings)  # the values are checked here, not in the cluster
    return render_trainjob(
        name=args.name,
        algorithm=args.algorithm,
        train_uri=args.train,
        valid_uri=args.valid,
        model_uri=args.model_uri,
        hyperparameters=settings,
        seed=args.seed,
        nodes=args.nodes,
        procs_per_node=args.procs_per_node,
        gpus_per_node=args.gpus_per_node,
        image=args.image,
        runtime=args.training_runtime,
        namespace=args.namespace,
        cpu=args.cpu,
        memory=args.memory,
        storage_secret=args.storage_secret,
        service_account=args.service_account,
        checkpoint_pvc=args.checkpoint_pvc,
    )
