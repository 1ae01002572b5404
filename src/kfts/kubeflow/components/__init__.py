"""KFP components: thin, typed wrappers over the kfts library (README.md "Layout").

Every component runs in one image, IMAGE, read from the KFTS_IMAGE environment variable (the Makefile exports
it), so a user points the pipelines at their own registry: `make compile KFTS_IMAGE=registry.example/kfts:1`.
Component bodies import kfts inside (they run in that image, not where the pipeline is compiled) and call the
functions the `kfts` CLI calls, so their outputs are the CLI's, byte for byte.

An optional input (a validation file, a previous model) that was not given travels as a placeholder artifact
whose metadata says ``present: False``: KFP cannot pass "no artifact" between tasks, and dsl.OneOf over
artifacts does not run under kfp.local.
"""

from kfts.kubeflow.components.batch_predict import batch_predict
from kfts.kubeflow.components.deploy import deploy
from kfts.kubeflow.components.evaluate import evaluate
from kfts.kubeflow.components.models import choose_champion, combine_members, fetch_model, member_indices, promote_model
from kfts.kubeflow.components.settings import IMAGE
from kfts.kubeflow.components.train import train
from kfts.kubeflow.components.train_on_trainjob import train_on_trainjob
from kfts.kubeflow.components.validate_csv import check_inputs, validate_csv

__all__ = [
    "IMAGE",
    "validate_csv",
    "check_inputs",
    "train",
    "train_on_trainjob",
    "evaluate",
    "batch_predict",
    "deploy",
    "fetch_model",
    "combine_members",
    "member_indices",
    "choose_champion",
    "promote_model",
]
STEPS = __all__[1:]  # the components, by their Python names (compile_components writes each as NAME.yaml)
