"""Components: interfaces, and combining InceptionTime members trained apart
(kfts.algorithms.inception_time.ensemble)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kfts.algorithms.inception_time.ensemble import combine_members
from kfts.algorithms.inception_time.estimator import InceptionTime, Params
from kfts.algorithms.inception_time.network import split_members
from kfts.core.csvio import LabeledSeries
from kfts.core.errors import InputError
from kfts.jobs.load import load_model
from kfts.kubeflow import components, images

from helpers import ROOT, make_classification, predictions_csv, write_csv

TINY = Params(filters=4, depth=3, models=1, epochs=2, batch_size=16, ensemble="sequential")


@pytest.fixture(scope="module")
def data():
    labels, values = make_classification(n_per_class=8, length=24)
    return LabeledSeries(labels=labels, values=values)


def _member(data, seed, path, **changes):
    model = InceptionTime(dataclasses.replace(TINY, **changes), device="cpu", seed=seed).fit(data)
    model.save(path)
    return path


def test_combined_members_predict_the_average_of_their_probabilities(data, tmp_path):
    dirs = [_member(data, seed, tmp_path / f"m{seed}") for seed in range(3)]
    combined = combine_members(loaded(dirs), train=data, device="cpu")
    assert combined.params.models == 3
    singles = np.mean([load_model(d, device="cpu").predict_proba(data.values) for d in dirs], axis=0)
    proba = combined.predict_proba(data.values)
    np.testing.assert_allclose(proba, singles, rtol=0, atol=1e-6)
    assert (combined.predict(data.values) == combined.classes[singles.argmax(1)]).all()
    assert set(combined.metrics) == {"train_loss", "train_accuracy"}
    # the saved artifact is an ordinary ensemble and predicts the same
    combined.save(tmp_path / "combined")
    np.testing.assert_array_equal(load_model(tmp_path / "combined", device="cpu").predict_proba(data.values), proba)
    assert [row["member"] for row in combined.history] == [1, 1, 2, 2, 3, 3]


def test_splitting_an_ensemble_and_combining_it_again_gives_it_back_exactly(data, tmp_path):
    whole = InceptionTime(dataclasses.replace(TINY, models=2), device="cpu", seed=5).fit(data)
    dirs = []
    for k, state in enumerate(split_members(whole.network.state_dict(), 2)):
        part = InceptionTime(dataclasses.replace(TINY, models=1), device="cpu")
        part.classes, part.length, part.scaler = whole.classes, whole.length, whole.scaler
        part.history, part.metrics = [], {}
        part.network = part._new_group(1)
        part.network.load_state_dict(state)
        part.save(tmp_path / f"part{k}")
        dirs.append(tmp_path / f"part{k}")
    combined = combine_members(loaded(dirs), device="cpu")
    assert predictions_csv(combined, data.values, probabilities=True) == predictions_csv(
        whole, data.values, probabilities=True
    )


def test_members_of_different_shapes_are_refused(data, tmp_path):
    a = _member(data, 0, tmp_path / "a")
    b = _member(data, 1, tmp_path / "b", filters=8)
    with pytest.raises(InputError, match="filters"):
        combine_members(loaded([a, b]), device="cpu")
    c = _member(data, 2, tmp_path / "c", batch_norm_stats="running")  # its statistics are of another kind
    with pytest.raises(InputError, match="batch-norm statistics"):
        combine_members(loaded([a, c]), device="cpu")


def test_the_train_component_reports_a_failed_fit_in_its_metrics(data, tmp_path):
    """The KFP metrics and the model's metadata say when the saved model scores near chance on its training
    series (here a learning rate too small to move a weight), as the log does."""
    from kfp.dsl import Dataset, Metrics, Model

    from kfts.kubeflow.components import train

    csv = write_csv(tmp_path / "train.csv", ([lab, *row] for lab, row in zip(data.labels, data.values)))
    outputs = []
    for lr in (1e-12, 0.01):
        model, metrics = Model(uri=str(tmp_path / f"model-{lr}")), Metrics(uri=str(tmp_path / f"metrics-{lr}"))
        train.python_func(
            algorithm="inception-time",
            train_data=Dataset(uri=str(csv)),
            valid_data=None,
            init_model=None,
            hyperparameters={**dataclasses.asdict(TINY), "lr": lr, "epochs": 8},
            seed=0,
            checkpoint_root="",
            run_id="r",
            model=model,
            metrics=metrics,
            device="cpu",
        )
        outputs.append((model.metadata, metrics.metadata))
    (failed_model, failed), (good_model, good) = outputs
    assert failed["fit_failed"] == 1.0 and "near chance" in failed_model["warnings"][0]
    assert good["fit_failed"] == 0.0 and good_model["warnings"] == [] and good["train_accuracy"] > 0.9


def test_components_have_typed_artifacts_and_the_configured_image(monkeypatch):
    from kfp.dsl import Dataset  # noqa: F401  (the artifact types below are KFP's)

    from kfts.kubeflow import components

    def outputs(component):
        return {k: v.type for k, v in component.component_spec.outputs.items()}

    def inputs(component):
        return {k: v.type for k, v in component.component_spec.inputs.items()}

    assert outputs(components.validate_csv) == {"data": "system.Dataset@0.0.1"}
    assert inputs(components.train)["train_data"] == "system.Dataset@0.0.1"
    assert outputs(components.train) == {"model": "system.Model@0.0.1", "metrics": "system.Metrics@0.0.1"}
    assert outputs(components.evaluate) == {
        "evaluation": "system.Artifact@0.0.1",
        "metrics": "system.Metrics@0.0.1",
        "classification": "system.ClassificationMetrics@0.0.1",
        "report": "system.HTML@0.0.1",
        "summary": "system.Markdown@0.0.1",
        "Output": "Float",
    }
    assert outputs(components.batch_predict) == {"predictions": "system.Dataset@0.0.1"}
    # KFTS_IMAGE is read when kfts.kubeflow.components is imported: a fresh process with it set, each component compiled
    monkeypatch.setenv("KFTS_IMAGE", "registry.example/team/kfts:7")
    configured = images.component_image()
    assert configured == "registry.example/team/kfts:7" != images.DEFAULT_IMAGE
    compiled = json.loads(
        subprocess.run(
            [sys.executable, "-c", COMPILED_IMAGES], capture_output=True, text=True, check=True, timeout=300
        ).stdout
    )
    assert compiled == {name: [configured] for name in ("validate_csv", "train", "evaluate", "batch_predict", "deploy")}


def test_committed_component_specs_are_what_make_compile_writes(tmp_path):
    """components/ holds every component's spec, as `make compile` writes it, and nothing else."""
    env = {k: v for k, v in os.environ.items() if k != "KFTS_IMAGE"}  # the committed files use the default
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kfts",
            "pipeline",
            "compile",
            "--output-dir",
            str(tmp_path / "p"),
            "--components-dir",
            str(tmp_path / "c"),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    written = {p.name: p.read_text() for p in (tmp_path / "c").iterdir()}
    committed = {p.name: p.read_text() for p in (ROOT / "components").glob("*.yaml")}
    assert sorted(written) == sorted(f"{name}.yaml" for name in components.STEPS)
    stale = sorted(set(written) ^ set(committed) | {n for n in written if written[n] != committed.get(n)})
    assert not stale, f"components/ is stale: run `make compile` ({', '.join(stale)})"


COMPILED_IMAGES = """
import json, pathlib, sys, tempfile
import yaml
from kfp import compiler
from kfts.kubeflow import components
images = {}
with tempfile.TemporaryDirectory() as tmp:
    for name in ("validate_csv", "train", "evaluate", "batch_predict", "deploy"):
        path = pathlib.Path(tmp) / (name + ".yaml")
        compiler.Compiler().compile(getattr(components, name), str(path))
        executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
        images[name] = sorted({e["container"]["image"] for e in executors.values()})
print(json.dumps(images))
"""


def loaded(model_dirs) -> dict:
    return {str(d): load_model(d, device="cpu") for d in model_dirs}
