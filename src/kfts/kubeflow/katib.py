"""Katib hyperparameter tuning of the train step: src/kfts/kubeflow/templates/katib-experiment.yaml (package data)
filled in with a search space.

Each trial fetches the training and validation files (`kfts copy`), runs `kfts train` (the pipeline's train
step), and Katib's StdOut collector reads its `name=value` metric lines; the objective is the latest value of
the objective metric, which is the final model's (fit() prints the whole model's figures last). With a model
root, each trial then copies its model to <model root>/<trial name> (Katib's ${trialSpec.Name}), so the best
trial's model is there to use: `kfts pipeline run ... --init-model <model root>/<best trial>` (the fetch-model
step).

What reaches the trial's shell: Katib pastes each trial's values into the trial template by plain string
replacement of `${trialParameters.NAME}` (in its JSON text), so no quoting can protect a value there. Every
value a trial can get is therefore checked here as `kfts train` checks its flag (kfts.core.hyperparameters), and
written in its canonical form: a number Katib draws from a numeric range, or a listed value that is a number
or one of the hyperparameter's choices. Fixed texts (URIs, --set values) are quoted for the shell.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import fields
from importlib import resources

import yaml

from kfts.core.errors import InputError
from kfts.core.hyperparameters import parse_param
from kfts.kubeflow.deploy import check_name, check_names, check_uris

TEMPLATE = "katib-experiment.yaml"  # in kfts/templates, installed with the package
WORK = "/tmp/kfts"  # the trial's files: /tmp is the pod's emptyDir, the root filesystem being read-only


def render_experiment(
    *,
    algorithm: str,
    train_uri: str,
    valid_uri: str,
    search: list[tuple[str, str]],
    fixed: dict | None = None,
    name: str | None = None,
    image: str | None = None,
    objective: str | None = None,
    max_trials: int = 12,
    parallel_trials: int = 3,
    namespace: str | None = None,
    gpus: int = 0,
    seed: int = 0,
    model_root: str | None = None,
    cpu: str = "2",
    memory: str = "8Gi",
    deadline_s: int = 24 * 3600,
    storage_secret: str | None = None,
    service_account: str | None = None,
) -> dict:
    """A Katib Experiment (kubeflow.org/v1beta1) as a dict.

    search: (hyperparameter, spec) pairs: `MIN:MAX` a range (int or double by the hyperparameter's type),
    `MIN:MAX:log` a log-uniform double range, `A,B,C` a list (categorical for text, discrete for numbers).
    fixed: hyperparameters every trial uses (values or their text). image: the trial image, by default the
    component image (kfts.kubeflow.images), its CUDA build when `gpus` > 0. model_root: a URI (s3://, gs://, ...) each
    trial writes its model under, in a folder named after the trial; without it the models stay in the trial
    pods and are lost. cpu, memory: each trial's requests and limits; deadline_s: the trial Job's
    activeDeadlineSeconds. storage_secret: a Secret whose keys (AWS_ACCESS_KEY_ID, ...) become the trial's
    environment; service_account: the trial pod's.
    """
    from kfts.algorithms import spec

    params_class = spec(algorithm).Params
    params = {f.name: f for f in fields(params_class)}
    default_objective, *others = spec(algorithm).metrics  # the metric lines its training prints
    objective = objective or default_objective
    if objective not in (default_objective, *others):
        raise InputError(
            f"--objective {objective}: the trials print {', '.join([default_objective, *others])}; choose one of them"
        )
    if model_root is not None and "://" not in model_root:
        raise InputError(
            f"--model-root {model_root}: give a URI the trial pods write to (s3://bucket/path, "
            "gs://..., hdfs://...): a path in a trial pod is lost with it"
        )
    if name is not None:
        check_name(name, "--name")
    check_names({"--namespace": namespace, "--storage-secret": storage_secret, "--service-account": service_account})
    goal = "minimize" if objective.endswith("_loss") else "maximize"
    if not search:
        raise InputError("give at least one --search NAME=SPEC")
    if not 1 <= parallel_trials <= max_trials:
        raise InputError(f"need 1 <= --parallel-trials ({parallel_trials}) <= --max-trials ({max_trials})")
    if deadline_s < 1:
        raise InputError(f"--trial-deadline must be at least 1 second, not {deadline_s}")
    check_uris({"--train": train_uri, "--valid": valid_uri, "--model-root": model_root or ""})
    if gpus < 0:
        raise InputError(f"--gpus {gpus}: at least 0")
    searched = [k for k, _ in search]
    for key in [*(fixed or {}), *searched]:
        if key not in params:
            raise InputError(f"unknown {algorithm} hyperparameter {key!r} (known: {', '.join(params)})")
        if searched.count(key) + (key in (fixed or {})) > 1:  # Katib refuses the one, a trial drops the other
            raise InputError(f"hyperparameter {key!r} is given twice (--search, --set): give it once")
    fixed = {
        key: _checked(params_class, key, str(value), f"--set {key}={value!r}") for key, value in (fixed or {}).items()
    }

    experiment = copy.deepcopy(
        yaml.safe_load(resources.files("kfts.kubeflow.templates").joinpath(TEMPLATE).read_text())
    )
    experiment["metadata"] = {"name": name or f"kfts-{algorithm}", **({"namespace": namespace} if namespace else {})}
    body = experiment["spec"]
    metrics = [objective, *(m for m in others if m != objective)]
    body["objective"] = {
        "type": goal,
        "objectiveMetricName": objective,
        "additionalMetricNames": metrics[1:],
        "metricStrategies": [{"name": m, "value": "latest"} for m in metrics],
    }
    body["maxTrialCount"], body["parallelTrialCount"] = max_trials, parallel_trials
    body["parameters"] = [_parameter(params_class, key, text) for key, text in search]
    template = body["trialTemplate"]
    template["trialParameters"] = [
        {"name": key, "reference": key, "description": params[key].metadata.get("help", key)} for key, _ in search
    ]
    if model_root:
        template["trialParameters"].append(
            {
                "name": "trialName",
                "reference": "${trialSpec.Name}",
                "description": "the trial's name: its model's folder",
            }
        )
    job = template["trialSpec"]["spec"]
    job["activeDeadlineSeconds"] = int(deadline_s)
    _fill_pod(
        job["template"]["spec"],
        image=image,
        gpus=gpus,
        cpu=cpu,
        memory=memory,
        storage_secret=storage_secret,
        service_account=service_account,
        command=_trial_command(algorithm, train_uri, valid_uri, fixed, [k for k, _ in search], seed, model_root),
    )
    return experiment


def _trial_command(
    algorithm: str, train_uri: str, valid_uri: str, fixed: dict, searched: list[str], seed: int, model_root: str | None
) -> str:
    """The trial's `sh -c` script, one `{ ...; }` group: Katib's StdOut collector appends
    ` 1>/var/log/katib/metrics.log 2>&1` to the script (kubeflow/katib pkg/webhook/v1beta1/pod/utils.go,
    wrapWorkerContainer), and the group is what that redirect then takes, metric lines and all, whatever
    step comes last."""
    flags = [f"--{k.replace('_', '-')} {_word(v)}" for k, v in fixed.items()]
    # quoted for the shell's reading alone: Katib pastes in one of the checked values (see the module's doc)
    flags += [f"--{k.replace('_', '-')} '${{trialParameters.{k}}}'" for k in searched]
    steps = [
        f"kfts copy {_word(train_uri)} {WORK}/train.csv",
        f"kfts copy {_word(valid_uri)} {WORK}/valid.csv",
        " ".join(
            [
                f"kfts train {algorithm} --train {WORK}/train.csv --valid {WORK}/valid.csv --model-dir "
                f"{WORK}/model --seed {int(seed)}",
                *flags,
            ]
        ),
    ]
    if model_root:
        steps.append(f"kfts copy {WORK}/model {_word(model_root.rstrip('/'))}/'${{trialParameters.trialName}}'")
    return "{ " + " && ".join(steps) + "; }"


def _word(value) -> str:
    """A fixed text as one shell word, also through Kubernetes: the kubelet expands `$(VAR)` and `$$` in a
    container's args before the shell reads them (kubernetes third_party/forked/golang/expansion), so `$` is
    written `$$`."""
    return shlex.quote(str(value)).replace("$", "$$")


def _fill_pod(
    pod: dict,
    *,
    command: str,
    image: str | None,
    gpus: int,
    cpu: str,
    memory: str,
    storage_secret: str | None,
    service_account: str | None,
) -> None:
    """The trial pod's image, command, resources and identity; its security context is the template's."""
    from kfts.kubeflow.deploy import GPU_TOLERATIONS, container_resources
    from kfts.kubeflow.images import component_image

    container = pod["containers"][0]
    container["image"] = image or component_image(gpu=gpus > 0)
    container["args"] = [command]
    container["resources"] = container_resources(cpu, memory, gpus=gpus)
    if gpus > 0:
        pod["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    if storage_secret:
        container["envFrom"] = [{"secretRef": {"name": storage_secret}}]
    if service_account:
        pod["serviceAccountName"] = service_account


def _checked(params_class, name: str, text: str, where: str):
    """`text` as a value of hyperparameter `name`, or an InputError that names the flag it came from."""
    try:
        return parse_param(params_class, name, text)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _parameter(params_class, name: str, text: str) -> dict:
    """One Katib search parameter from a --search SPEC, typed by the hyperparameter's field type. Each value in
    it is checked as `kfts train` checks its flag and written in canonical form: these are what Katib pastes
    into the trials."""
    where = f"--search {name}={text!r}"
    kind = next(f.type for f in fields(params_class) if f.name == name)
    if "," in text or kind == "str":
        values = [str(_checked(params_class, name, v.strip(), where)) for v in text.split(",") if v.strip()]
        if not values:
            raise InputError(f"{where}: an empty list")
        return {
            "name": name,
            "parameterType": "categorical" if kind == "str" else "discrete",
            "feasibleSpace": {"list": values},
        }
    low, _, rest = text.partition(":")
    high, _, scale = rest.partition(":")
    if not rest or scale not in ("", "log"):
        raise InputError(f"{where}: not MIN:MAX, MIN:MAX:log or A,B,C")
    low, high = (_checked(params_class, name, v.strip(), where) for v in (low, high))
    if not low < high:
        raise InputError(f"{where}: MIN must be below MAX")
    space = {"min": str(low), "max": str(high)}
    if scale:
        if kind == "int" or low <= 0:
            raise InputError(f"{where}: a log scale needs a positive float range")
        space["distribution"] = "logUniform"
    return {"name": name, "parameterType": "int" if kind == "int" else "double", "feasibleSpace": space}


def to_yaml(experiment: dict) -> str:
    return yaml.safe_dump(experiment, sort_keys=False, width=1000)
