"""`kfts pipeline ...`: run the KFP pipelines locally, compile them, submit and schedule them on a cluster,
and render Katib tuning experiments.

    kfts pipeline run ALGORITHM --train F [--valid F] [--test F] [--test-labels F] [...]
    kfts pipeline run retrain-ALGORITHM --champion DIR --train F --holdout F [...]
    kfts pipeline compile [--output-dir pipelines/compiled] [--components-dir components]
    kfts pipeline compile PIPELINE --output FILE [placement options]
    kfts pipeline submit --host URL (PIPELINE [placement options] | --package FILE) [--param NAME=VALUE ...]
        [--service-account NAME] [--cache | --no-cache]
    kfts pipeline schedule --host URL --cron EXPR (PIPELINE ... | --package FILE) [--param NAME=VALUE ...] [...]
    kfts pipeline tune ALGORITHM --train URI [--valid URI] --search NAME=SPEC ... [...]

This module declares the commands and their flags; each command's work is in its own module:
run, compile (and the placement options: see pipelines.common.Cluster), submit (submit, schedule) and tune, over
kfts.kubeflow (local_run, compile, katib).
"""

from __future__ import annotations

from kfts.cli import add_hyperparameter_flags
from kfts.cli.pipeline.compile import cmd_compile
from kfts.cli.pipeline.run import cmd_run
from kfts.cli.pipeline.submit import cmd_schedule, cmd_submit
from kfts.cli.pipeline.tune import cmd_tune
from kfts.kubeflow.compile import pipeline_names
from kfts.kubeflow.deploy import DEPLOYMENT_MODES


def local_run_flags(p, algorithm: str, spec) -> None:
    """What every `kfts pipeline run PIPELINE` takes: seed, output folder, containers, hyperparameters."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--output-dir",
        default="pipeline-output",
        help="the pipeline root: every step's outputs are kept here (default pipeline-output)",
    )
    p.add_argument(
        "--containers",
        action="store_true",
        help="run every step in the component image ($KFTS_IMAGE, `make images`) through a "
        "Docker-compatible engine (DOCKER_HOST) instead of as subprocesses here",
    )
    add_hyperparameter_flags(p, spec.Params)
    p.set_defaults(func=cmd_run, algorithm=algorithm)


def register(commands) -> None:
    from kfts.algorithms import ALGORITHMS
    from kfts.kubeflow.images import component_image

    pipeline = commands.add_parser(
        "pipeline", help="Kubeflow Pipelines: run locally, compile, submit, schedule, tune with Katib"
    )
    sub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline on this machine with kfp.local")
    run_pipelines = run.add_subparsers(dest="pipeline", required=True, metavar="PIPELINE")
    for algorithm, spec in ALGORITHMS.items():
        if spec.pipeline_path:
            p = run_pipelines.add_parser(algorithm, help=f"the {algorithm} pipeline")
            p.add_argument("--train", required=True, help="training CSV (path or URI)")
            p.add_argument("--valid", help="validation CSV: scored, and the gate of deployment")
            p.add_argument("--test", help="CSV to batch-predict (inference layout)")
            p.add_argument("--test-labels", help="labels of --test, one per row: the test data is then evaluated")
            p.add_argument("--init-model", help="a previous model directory (or URI) to continue training from")
            for name, text in spec.predict_options.items():
                p.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=f"predictions: {text}")
            if spec.fan_out:
                p.add_argument(
                    "--fan-out",
                    action="store_true",
                    help="train the ensemble members as parallel tasks and combine them",
                )
            local_run_flags(p, algorithm, spec)

        p = run_pipelines.add_parser(
            f"retrain-{algorithm}", help=f"champion/challenger retraining of a {algorithm} model"
        )
        p.add_argument(
            "--champion",
            required=True,
            help="the current model directory (or URI): replaced by the challenger when the challenger scores better",
        )
        p.add_argument("--train", required=True, help="the new training CSV (path or URI)")
        p.add_argument(
            "--holdout",
            required=True,
            help="held-out CSV both models are scored on" + (" (labeled layout)" if spec.labeled_layout else ""),
        )
        if not spec.labeled_layout:
            p.add_argument(
                "--holdout-labels",
                help=f"labels of --holdout, one per row (needed for the default "
                f"metric, {spec.holdout_metric}; without them use another "
                "--metric, e.g. --metric mse --lower-is-better)",
            )
        p.add_argument("--valid", help="validation CSV, scored while the challenger trains")
        p.add_argument("--init-model", help="start the challenger from this model (e.g. the champion)")
        p.add_argument("--metric", help=f"the held-out metric that decides (default {spec.holdout_metric})")
        p.add_argument("--lower-is-better", action="store_true", help="the metric is an error (mse)")
        local_run_flags(p, algorithm, spec)
    run.set_defaults(fan_out=False, holdout_labels=None)

    def placement(p):
        p.add_argument(
            "--fan-out",
            action="store_true",
            help="ensemble members as parallel tasks ("
            + ", ".join(a for a, s in ALGORITHMS.items() if s.fan_out)
            + ")",
        )
        g = p.add_argument_group("placement on the cluster (pipelines.common.Cluster, pipelines/README.md)")
        g.add_argument("--gpus", type=int, default=0, help="GPUs per training / prediction task (default 0: CPU)")
        g.add_argument("--accelerator", default="nvidia.com/gpu", help="the GPU resource name")
        g.add_argument(
            "--node-selector",
            action="append",
            metavar="LABEL=VALUE",
            help="label of the GPU nodes the GPU tasks must run on (repeatable; default none)",
        )
        g.add_argument(
            "--toleration",
            action="append",
            metavar="KEY[=VALUE][:EFFECT]",
            help="taint of the GPU nodes to tolerate (repeatable; default nvidia.com/gpu:NoSchedule)",
        )
        g.add_argument(
            "--resources",
            action="append",
            metavar="STEP=cpu:Q,memory:Q,cpu_limit:Q,memory_limit:Q",
            help="requests and limits of a step's tasks (repeatable; STEP all: every step); default "
            "validate-csv, train, combine-members, evaluate, batch-predict cpu:2,memory:8Gi,"
            "cpu_limit:4,memory_limit:8Gi; the others cpu:500m,memory:1Gi,cpu_limit:1,"
            "memory_limit:2Gi",
        )
        g.add_argument(
            "--image",
            help=f"the default of the pipeline's `image` parameter, the tasks' image "
            f"(default {component_image()}, from KFTS_IMAGE); GPU tasks run its -cuda "
            "twin (`gpu_image`). A run may pass other images as those parameters",
        )
        g.add_argument(
            "--storage-secret",
            default="",
            metavar="SECRET",
            help="Kubernetes Secret of the object store's credentials (keys AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, optional AWS_ENDPOINT_URL, AWS_REGION), given as env vars "
            "to the steps that read or write it (default none)",
        )
        g.add_argument("--retries", type=int, default=3, help="retries of the training task (default 3)")
        g.add_argument(
            "--checkpoint-pvc",
            default="",
            metavar="CLAIM",
            help="PersistentVolumeClaim keeping training checkpoints so a retry resumes "
            "(pipelines/checkpoints-pvc.yaml; default none: a retry starts over)",
        )
        g.add_argument(
            "--trainjob-nodes",
            type=int,
            default=0,
            help="train on Kubeflow Trainer: a TrainJob over this many nodes, --gpus each (one "
            "process per GPU), from the pipeline's train step (default 0: in the step's pod)",
        )
        g.add_argument(
            "--trainjob-procs-per-node",
            type=int,
            default=1,
            help="processes per TrainJob node without GPUs (default 1)",
        )
        g.add_argument(
            "--trainjob-runtime",
            default="kfts-torch",
            help="the ClusterTrainingRuntime of the TrainJob (default kfts-torch: `kfts deploy "
            "render --kind ClusterTrainingRuntime`)",
        )
        g.add_argument(
            "--deployment-mode",
            default="",
            choices=["", *DEPLOYMENT_MODES],
            help="the deploy step's KServe deployment mode (default: the cluster's)",
        )
        g.add_argument(
            "--kserve-version",
            default="",
            metavar="X.Y",
            help="the cluster's KServe release, which names the mode (before 0.16: RawDeployment, "
            "Serverless; default: Standard, Knative)",
        )
        g.add_argument(
            "--deploy-timeout-minutes",
            type=float,
            default=30.0,
            help="how long the deploy step waits for the new model to serve before it puts the "
            "previous one back (default 30)",
        )

    comp = sub.add_parser("compile", help="write pipeline IR YAML (all committed variants, or one)")
    comp.add_argument(
        "pipeline",
        nargs="?",
        choices=pipeline_names(),
        help="one pipeline to compile with the placement options; none: every variant",
    )
    comp.add_argument(
        "--output-dir",
        default=".",
        help="where the YAML goes (default: the current folder; `make compile` writes pipelines/compiled/)",
    )
    comp.add_argument("--output", help="file for the one PIPELINE (default OUTPUT_DIR/PIPELINE.yaml)")
    comp.add_argument(
        "--components-dir",
        help="with every variant, also each component's YAML spec, as "
        "COMPONENTS_DIR/NAME.yaml (`make compile` writes components/)",
    )
    placement(comp)
    comp.set_defaults(func=cmd_compile)

    def remote(p):
        p.add_argument(
            "pipeline", nargs="?", choices=pipeline_names(), help="a pipeline, compiled with the placement options"
        )
        p.add_argument("--package", help="or an IR YAML file to send (pipelines/compiled/...)")
        p.add_argument("--host", required=True, help="the KFP API endpoint (e.g. http://ml-pipeline.kubeflow:8888)")
        p.add_argument("--namespace", help="the Kubeflow profile namespace (multi-user installs)")
        p.add_argument("--token", help="a bearer token for the KFP API")
        p.add_argument("--experiment", default="kfts", help="experiment name (default kfts)")
        p.add_argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="pipeline parameter (repeatable), e.g. train_uri=s3://bucket/train.csv",
        )
        caching = p.add_mutually_exclusive_group()
        caching.add_argument(
            "--cache",
            dest="caching",
            action="store_const",
            const="cache",
            help="let KFP serve the steps from its cache, side-effect steps too (default: each step as compiled)",
        )
        caching.add_argument(
            "--no-cache",
            dest="caching",
            action="store_const",
            const="no-cache",
            help="run the steps again even when KFP has them cached",
        )
        p.add_argument(
            "--service-account",
            metavar="NAME",
            help="the Kubernetes service account the run's pods run as (default: the KFP API's, "
            "pipeline-runner or the profile's default-editor)",
        )
        placement(p)

    submit = sub.add_parser("submit", help="create a run on a Kubeflow Pipelines cluster")
    remote(submit)
    submit.add_argument("--run-name")
    submit.set_defaults(func=cmd_submit)

    schedule = sub.add_parser("schedule", help="create a recurring run (scheduled retraining)")
    remote(schedule)
    schedule.add_argument("--cron", required=True, help="cron expression, e.g. '0 3 * * 1' (Mondays 03:00)")
    schedule.add_argument("--job-name")
    schedule.set_defaults(func=cmd_schedule)

    tune = sub.add_parser("tune", help="render a Katib Experiment that tunes hyperparameters of the train step")
    tune.add_argument("algorithm", choices=list(ALGORITHMS))
    tune.add_argument("--train", required=True, help="training CSV URI the trials read (s3://, gs://, path)")
    tune.add_argument("--valid", required=True, help="validation CSV URI: the objective is measured on it")
    tune.add_argument(
        "--search",
        action="append",
        required=True,
        metavar="NAME=SPEC",
        help="a hyperparameter to search: MIN:MAX (a range), MIN:MAX:log (log scale, "
        "floats), or A,B,C (a list). Repeatable",
    )
    tune.add_argument("--set", action="append", metavar="NAME=VALUE", help="a fixed hyperparameter of every trial")
    tune.add_argument(
        "--objective",
        help="metric to optimise (default: the algorithm's first, "
        + "; ".join(f"{a} {s.metrics[0]}" for a, s in ALGORITHMS.items())
        + ")",
    )
    tune.add_argument("--max-trials", type=int, default=12)
    tune.add_argument("--parallel-trials", type=int, default=3)
    tune.add_argument("--name", help="experiment name (default kfts-ALGORITHM)")
    tune.add_argument("--namespace")
    tune.add_argument(
        "--image", help=f"trial image (default {component_image()}, from KFTS_IMAGE; its -cuda twin with --gpus)"
    )
    tune.add_argument("--gpus", type=int, default=0, help="GPUs per trial")
    tune.add_argument(
        "--model-root",
        help="URI each trial writes its model under, as ROOT/TRIAL-NAME "
        "(e.g. s3://bucket/tuning): the best trial's model is then there for "
        "`kfts pipeline run ... --init-model ROOT/TRIAL-NAME`",
    )
    tune.add_argument("--cpu", default="2", help="CPU request and limit of each trial (default 2)")
    tune.add_argument("--memory", default="8Gi", help="memory request and limit of each trial (default 8Gi)")
    tune.add_argument(
        "--trial-deadline",
        type=int,
        default=24 * 3600,
        metavar="SECONDS",
        help="a trial running longer fails (its Job's activeDeadlineSeconds; default 86400)",
    )
    tune.add_argument(
        "--storage-secret",
        metavar="NAME",
        help="Secret whose keys (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION) are the trials' object-store identity",
    )
    tune.add_argument("--service-account", metavar="NAME", help="the trial pods' service account")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--output", help="write the YAML here instead of stdout")
    tune.set_defaults(func=cmd_tune)
