"""Values the CSV contract accepts (finite float32) but far outside the training data, up to 3.4e38: the answers
stay finite. They overflowed the networks' float32 arithmetic: NaN probabilities with the first class as the
label, and anomaly scores left empty (or -inf, or beyond float32 so that V2's FP32 answer differed from V1's)
for the most anomalous step of all."""

from __future__ import annotations

import numpy as np
import pytest

from kfts.core.training import MAX_STANDARD_SCORE, standardize

from helpers import tiny_inception_time, tiny_lstm_ad

FLOAT32_MAX = float(np.finfo(np.float32).max)


def test_standardize_saturates_far_values_and_leaves_the_rest_as_they_were():
    values = np.array([[0.5, -2.0], [FLOAT32_MAX, -FLOAT32_MAX], [2e6, 2e5]], dtype=np.float32)
    scaled = standardize(values, [0.5, 1.0], [2.0, 0.1])
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled[0], np.float32([0.0, -30.0]))
    np.testing.assert_array_equal(scaled[1], [MAX_STANDARD_SCORE, -MAX_STANDARD_SCORE])
    np.testing.assert_array_equal(scaled[2], np.float32([(2e6 - 0.5) / 2.0, MAX_STANDARD_SCORE]))


def test_inception_time_answers_finite_probabilities_for_extreme_values():
    model, values = tiny_inception_time(filters=8, depth=3)
    rows = np.repeat(values[:1], 4, axis=0)
    rows[0, 5], rows[1, 5], rows[2] = FLOAT32_MAX, -FLOAT32_MAX, 2e37
    proba = model.predict_proba(rows)
    assert np.isfinite(proba).all(), proba
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(proba[3], model.predict_proba(values[:1])[0], rtol=1e-5)  # an ordinary row


@pytest.mark.parametrize("spike", [1e20, FLOAT32_MAX])
def test_lstm_ad_scores_an_extreme_spike_as_the_most_anomalous_step_within_float32(spike):
    t = np.arange(300)
    values = np.stack([np.sin(t / 5), np.cos(t / 7)], axis=1).astype(np.float32)
    model = tiny_lstm_ad(values[:200])
    test = values[200:].copy()
    test[50, 0] = spike
    scores, reconstructions = model.score(test)
    scored = scores[model.first_scored :]
    assert np.isfinite(scored).all() and np.isfinite(reconstructions[model.first_scored :]).all()
    assert np.argmin(scores[model.first_scored :]) + model.first_scored in range(50, 50 + model.first_scored + 1)
    assert scored.min() < model.threshold
    assert np.abs(scored).max() < FLOAT32_MAX  # V2 answers scores in FP32: the same value on every protocol
