"""Katib hyperparameter tuning of the train step: src/kfts/templates/katib-experiment.yaml (package data)
filled in with a search space.

Each trial runs `kfts train` (the pipeline's train step) on the training and validation files and Katib's
StdOut collector reads its `name=value` metric lines; the objective is the latest value of the objective
metric, which is the final model's (fit() prints the whole model's figures last). With a model root, each
trial then copies its model to <model root>/<trial name> (Katib's ${trialSpec.Name}), so the best trial's
model is there to use: `kfts pipeline run ... --init-model <model root>/<best trial>` (the fetch-model step).
"""

from __future__ import annotations

import copy
from importlib import resources
import shlex
from dataclasses import fields

import yaml

from kfts.errors import InputError

TEMPLATE = "katib-experiment.yaml"  # in kfts/templates, installed with the package


def render_experiment(*, algorithm: str, train_uri: str, valid_uri: str, search: list[tuple[str, str]],
                      fixed: dict | None = None, name: str | None = None, image: str | None = None,
                      objective: str | None = None, max_trials: int = 12, parallel_trials: int = 3,
                      namespace: str | None = None, gpus: int = 0, seed: int = 0, model_root: str | None = None
                      ) -> dict:
    """A Katib Experiment (kubeflow.org/v1beta1) as a dict.

    search: (hyperparameter, spec) pairs: `MIN:MAX` a range (int or double by the hyperparameter's type),
    `MIN:MAX:log` a log-uniform double range, `A,B,C` a list (categorical for text, discrete for numbers).
    fixed: hyperparameters every trial uses. image: the trial image, by default the component image (kfts.images),
    its CUDA build when `gpus` > 0. model_root: a URI (s3://, gs://, ...) each trial writes its model under,
    in a folder named after the trial; without it the models stay in the trial pods and are lost.
    """
    from kfts.deploy import GPU_TOLERATIONS
    from kfts.images import component_image
    from kfts.algorithms import spec
    params = {f.name: f for f in fields(spec(algorithm).Params)}
    default_objective, *others = spec(algorithm).metrics  # the metric lines its training prints
    objective = objective or default_objective
    if objective not in (default_objective, *others):
        raise InputError(f"--objective {objective}: the trials print {', '.join([default_objective, *others])}; "
                         "choose one of them")
    if model_root is not None and "://" not in model_root:
        raise InputError(f"--model-root {model_root}: give a URI the trial pods write to (s3://bucket/path, "
                         "gs://..., hdfs://...): a path in a trial pod is lost with it")
    goal = "minimize" if objective.endswith("_loss") else "maximize"
    if not search:
        raise InputError("give at least one --search NAME=SPEC")
    if not 1 <= parallel_trials <= max_trials:
        raise InputError(f"need 1 <= --parallel-trials ({parallel_trials}) <= --max-trials ({max_trials})")
    fixed = dict(fixed or {})
    for key in [*fixed, *(k for k, _ in search)]:
        if key not in params:
            raise InputError(f"unknown {algorithm} hyperparameter {key!r} (known: {', '.join(params)})")

    experiment = copy.deepcopy(yaml.safe_load(resources.files("kfts.templates").joinpath(TEMPLATE).read_text()))
    experiment["metadata"] = {"name": name or f"kfts-{algorithm}", **({"namespace": namespace} if namespace else {})}
    spec = experiment["spec"]
    metrics = [objective, *(m for m in others if m != objective)]
    spec["objective"] = {"type": goal, "objectiveMetricName": objective, "additionalMetricNames": metrics[1:],
                         "metricStrategies": [{"name": m, "value": "latest"} for m in metrics]}
    spec["maxTrialCount"], spec["parallelTrialCount"] = max_trials, parallel_trials
    spec["parameters"] = [_parameter(key, params[key].type, text) for key, text in search]
    template = spec["trialTemplate"]
    template["trialParameters"] = [{"name": key, "reference": key,
                                    "description": params[key].metadata.get("help", key)} for key, _ in search]
    if model_root:
        template["trialParameters"].append({"name": "trialName", "reference": "${trialSpec.Name}",
                                            "description": "the trial's name: its model's folder"})

    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in fixed.items()]
    flags += [f"--{k.replace('_', '-')} ${{trialParameters.{k}}}" for k, _ in search]
    copy_files = ("python -c 'import sys, pyarrow.fs; [pyarrow.fs.copy_files(u, p) for u, p in "
                  "zip(sys.argv[1::2], sys.argv[2::2])]' ")
    command = (f"{copy_files}{shlex.quote(train_uri)} /tmp/train.csv {shlex.quote(valid_uri)} /tmp/valid.csv"
               f" && kfts train {algorithm} --train /tmp/train.csv --valid /tmp/valid.csv "
               f"--model-dir /tmp/model --seed {int(seed)} {' '.join(flags)}")
    if model_root:
        upload = ("python -c 'import sys, pyarrow.fs; fs, path = pyarrow.fs.FileSystem.from_uri(sys.argv[2]); "
                  "fs.create_dir(path); pyarrow.fs.copy_files(sys.argv[1], path, destination_filesystem=fs)' ")
        command += f" && {upload}/tmp/model {shlex.quote(model_root.rstrip('/'))}/${{trialParameters.trialName}}"
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["image"] = image or component_image(gpu=gpus > 0)
    container["args"] = [command]
    if gpus > 0:
        container["resources"]["limits"] = {"nvidia.com/gpu": gpus}
        pod = template["trialSpec"]["spec"]["template"]["spec"]
        pod["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    return experiment


def _parameter(name: str, kind: str, text: str) -> dict:
    """One Katib search parameter from a --search SPEC, typed by the hyperparameter's field type."""
    number = {"int": int, "float": float}.get(kind)
    try:
        if "," in text or (kind == "str"):
            values = [v.strip() for v in text.split(",") if v.strip()]
            if number:
                [number(v) for v in values]
            if not values:
                raise ValueError("empty list")
            return {"name": name, "parameterType": "discrete" if number else "categorical",
                    "feasibleSpace": {"list": values}}
        low, high, *scale = text.split(":")
        if number is None or len(scale) > 1 or (scale and scale != ["log"]):
            raise ValueError("not MIN:MAX or MIN:MAX:log")
        if not number(low) < number(high):
            raise ValueError("MIN must be below MAX")
        space = {"min": low, "max": high}
        if scale:
            if number is int or float(low) <= 0:
                raise ValueError("a log scale needs a positive float range")
            space["distribution"] = "logUniform"
        return {"name": name, "parameterType": "int" if number is int else "double", "feasibleSpace": space}
    except ValueError as e:
        raise InputError(f"--search {name}={text}: {e} (use MIN:MAX, MIN:MAX:log or A,B,C)") from None


def to_yaml(experiment: dict) -> str:
    return yaml.safe_dump(experiment, sort_keys=False, width=1000)
