"""The registry and the training job shared by `kfts train` and the KFP train component."""

import pytest

from kfts.algorithms import get
from kfts.core.errors import InputError
from kfts.jobs.train import make_params, train


def test_hyperparameters_given_as_text_get_their_fields_types():
    # kfp.local hands pipeline parameters over as text, ints sometimes as "4.0"
    params = make_params("inception-time", {"filters": "4.0", "lr": "0.01", "schedule": "plateau"})
    assert (params.filters, params.lr, params.schedule, params.depth) == (4, 0.01, "plateau", 6)
    assert make_params("lstm-ad", {"hidden_size": 8}).hidden_size == 8


def test_unknown_or_mistyped_hyperparameters_are_refused():
    with pytest.raises(InputError, match="unknown inception-time hyperparameter 'hidden_size'"):
        make_params("inception-time", {"hidden_size": 8})
    with pytest.raises(InputError, match="wrong type"):
        make_params("lstm-ad", {"epochs": "many"})
    with pytest.raises(InputError, match="unknown algorithm 'rocket'"):
        get("rocket")


def test_training_job_refuses_an_init_model_of_the_other_algorithm(tmp_path, classification_csv):
    train_csv, _, _ = classification_csv
    tiny = make_params("inception-time", {"filters": 4, "depth": 3, "models": 1, "epochs": 1})
    train("inception-time", train_csv, tmp_path / "it", params=tiny, seed=0, device="cpu")
    with pytest.raises(InputError, match="holds a model for inception-time, not lstm-ad"):
        train("lstm-ad", train_csv, tmp_path / "ad", init_model=tmp_path / "it", device="cpu")
    assert not (tmp_path / "ad").exists()


@pytest.mark.parametrize("algorithm", ["inception-time", "lstm-ad"])
def test_estimators_follow_scikit_learn_conventions(algorithm):
    """__init__ stores its arguments and touches nothing global; fitted attributes do not exist before fit;
    using an unfitted estimator says what to call."""
    import numpy as np
    import torch

    from kfts.core.errors import NotFittedError

    cls = get(algorithm)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = cls.Params()
        estimator = cls(params, device="cuda", seed=3)  # no GPU here: checked when fitting, not now
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert (estimator.params, estimator.device, estimator.seed) == (params, "cuda", 3)
    assert not hasattr(estimator, "network") and not hasattr(estimator, "metrics")
    with pytest.raises(NotFittedError, match="is not fitted: call fit"):
        estimator.save("never-written")
    with pytest.raises(AttributeError):  # NotFittedError is one too, as scikit-learn's is
        estimator.predict_proba(np.zeros((1, 4))) if hasattr(estimator, "predict_proba") else estimator.score(
            np.zeros((100, 1))
        )
