"""The interface every algorithm implements: what the CLI, batch prediction, the predictor, the components and
the pipelines ask of an algorithm, so that none of them needs to know which one it is.

An algorithm is one folder under src/kfts/algorithms/ (see docs/ALGORITHMS.md): its `__init__.py` defines a
subclass of Algorithm and must stay cheap to import (no torch: `kfts --help` and `kfts validate` import every
registered algorithm); the estimator, its network and its serving code are imported on first use.

Two file layouts exist (docs/FORMATS.md): a series per row (`labeled_layout`: the training file has a label in
its first column) and a time step per row (a series per column, labels in a separate file). Summaries that
describe() returns are plain JSON: they travel as KFP metadata from the validate-csv tasks to check-inputs.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from kfts.core.errors import InputError, shown
from kfts.core.hyperparameters import field_type
from kfts.core.manifest import FIELDS, Field, as_written
from kfts.core.manifest import check as check_fields
from kfts.core.manifest import value as field_value


class Algorithm:
    """One algorithm kfts trains and serves. Subclasses set the attributes and implement the methods that
    raise NotImplementedError; the others have defaults that fit most algorithms."""

    id: str  # as users type it: `kfts train ID`, the artifact's "algorithm"
    summary: str  # one line for --help
    Params: type  # the hyperparameter dataclass (fields: name, type, default, help)
    estimator_path: str  # "module:Class", imported on first use
    labeled_layout: bool = False  # training files carry a label first in every row (else labels are separate)
    predict_options: dict[str, str] = {}  # on/off options of batch prediction: name -> help
    metrics: tuple[str, ...] = ()  # the metric lines training prints: the first is Katib's default objective
    holdout_metric: str = ""  # the evaluation figure that decides champion vs challenger in retraining
    pipeline_path: str | None = None  # "module:function" building its KFP pipeline (cluster, **options)
    fan_out: bool = False  # its pipeline can train ensemble members as parallel tasks
    # The most a model artifact may ask for, by field of its manifest ("hyperparameters.depth"): sizes that cost
    # memory or time before the weights could tell (the number of layers to build, an input length the model is
    # run on). Far beyond any model that trains; a crafted manifest is refused before anything is built.
    artifact_caps: dict[str, int] = {}
    # What its kfts-model.json holds besides the fields every model has (kfts.core.manifest.FIELDS), by field, in
    # the order they are checked (a field's length may be an earlier field's value): checked before a model is
    # loaded and before `kfts inspect` shows it, so that an edited manifest is refused naming the field.
    manifest_fields: dict[str, Field] = {}

    # -- cheap: the command line and the input checks (kfts.jobs.validate) ----------------------------------

    def describe(self, path: str | os.PathLike, layout: str, head: bool) -> dict:
        """Read `path` in `layout` (training, inference or labels) and sum it up: rows (None with head: only
        the first block read) and what check_shape() compares (length, columns, classes...)."""
        raise NotImplementedError

    def check_shape(self, summary: dict, reference: dict, against: str) -> None:
        """Raise an InputError when the file `summary` describes cannot go with `reference` (the training
        file's summary or the model's); `against` says which, for the message ("the model was trained on")."""
        raise NotImplementedError

    def check_training(self, summary: dict) -> None:
        """Raise an InputError when a training file, fine as a file, cannot train a model (one class)."""

    def summary_line(self, summary: dict) -> str:
        """What `kfts validate` prints after "ok: FILE: "."""
        raise NotImplementedError

    def evaluation_layout(self, separate_labels: bool) -> str:
        """The layout of the data an evaluation scores: labelled rows, or series whose labels are a file apart."""
        return "training" if self.labeled_layout and not separate_labels else "inference"

    def estimator(self):
        """The estimator class (imports torch)."""
        module, name = self.estimator_path.split(":")
        return getattr(importlib.import_module(module), name)

    def pipeline(self):
        """The function that builds this algorithm's KFP pipeline, or None (imports kfp)."""
        if self.pipeline_path is None:
            return None
        module, name = self.pipeline_path.split(":")
        return getattr(importlib.import_module(module), name)

    # -- the data an estimator is fitted on and predicts ------------------------------------------------------

    def read_training(self, path: str | os.PathLike):
        """A training file as what the estimator's fit() takes."""
        raise NotImplementedError

    def read_inference(self, model, source) -> np.ndarray:
        """An inference file (a path, or csvio.CsvBytes of a request's body) as the values `model` predicts,
        checked against it."""
        raise NotImplementedError

    # each algorithm declares its own options as keywords: `*args: Any, **options: Any` lets a type checker see that
    def predictions_csv(self, model, values: np.ndarray, *args: Any, **options: Any) -> str:
        """The batch prediction output of `values` (docs/FORMATS.md), with the predict_options given."""
        raise NotImplementedError

    def write_predictions(self, model, path, blocks, out, chunk_bytes: int, **options) -> int:
        """Stream the blocks of rows of the file at `path` (csvio.iter_row_blocks) through predictions_csv()
        into the open text file `out`; return the number of rows. The default reads every block first: an
        algorithm whose rows are independent can do better (see the InceptionTime one)."""
        blocks = list(blocks)
        values = np.concatenate(blocks) if blocks else np.empty((0, 0), dtype=np.float32)
        out.write(self.predictions_csv(model, values, **options))
        return len(values)

    def evaluate(self, model, input_path, labels_path=None) -> tuple[dict, str]:
        """Score `model` on labelled data: (metrics, the report's HTML page)."""
        raise NotImplementedError

    def serving(self, model):
        """The predictor's view of `model`: a kfts.algorithms.adapter.Adapter."""
        raise NotImplementedError

    # -- loading a model artifact ----------------------------------------------------------------------------

    def check_artifact(self, model_dir: str | os.PathLike, manifest: dict) -> None:
        """Refuse, before anything is built, a model artifact whose manifest is not what this algorithm's models
        hold (check_manifest), or whose weights file holds other tensors than the network the manifest describes:
        the estimator's from_manifest() (optional) builds it on the meta device, which gives shapes and dtypes
        without memory."""
        import torch

        from kfts.core import artifact

        self.check_manifest(manifest, Path(model_dir) / artifact.MANIFEST)
        header = artifact.weights_header(model_dir)
        from_manifest = getattr(self.estimator(), "from_manifest", None)
        if from_manifest is not None:
            with torch.device("meta"):
                expected = from_manifest(manifest).network.state_dict()
            artifact.check_weights(model_dir, header, expected)

    def check_manifest(self, manifest: dict, where: str | os.PathLike) -> None:
        """Refuse a manifest (read from `where`) whose fields are not what this algorithm's models hold: the
        common fields, the caps, the hyperparameters (each of the Params' type, then the Params' own check),
        then manifest_fields."""
        check_fields(manifest, FIELDS, where)
        self.check_caps(manifest, where)
        hyperparameters = manifest["hyperparameters"]
        types = {f.name: field_type(f) for f in dataclasses.fields(self.Params)}
        for name, value in hyperparameters.items():
            if name not in types:
                raise InputError(f"hyperparameters.{name} is not a hyperparameter of {self.id}", path=where)
            if not _of_type(value, types[name]):
                raise InputError(
                    f"hyperparameters.{name} must be {_TYPE_NAMES[types[name]]}, not {as_written(value)}", path=where
                )
        try:
            self.Params(**hyperparameters)
        except InputError as e:  # its own check names the flag; here the value is the file's
            raise InputError(f"hyperparameters: {e.message}", path=where) from None
        check_fields(manifest, self.manifest_fields, where)

    def check_caps(self, manifest: dict, where: str | os.PathLike | None = None) -> None:
        """Refuse a manifest (or, in training, {"hyperparameters": ...}) that asks for more than artifact_caps."""
        for field, cap in self.artifact_caps.items():
            value = field_value(manifest, field)
            if value is not None and not (type(value) is int and 0 < value <= cap):
                raise InputError(f"{field} is {shown(value)}: kfts loads models with 1 to {cap:,}", path=where)


_TYPE_NAMES = {"int": "a whole number", "float": "a number", "str": "a text"}


def _of_type(value, kind: str) -> bool:
    """`value` read from JSON is of the Params field type `kind` (true and false are not numbers)."""
    return type(value) in {"int": (int,), "float": (int, float), "str": (str,)}[kind]
