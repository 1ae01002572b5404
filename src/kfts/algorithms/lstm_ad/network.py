"""LSTM-AD (Malhotra et al., ESANN 2015): a stacked LSTM that predicts a multivariate series.

    x [batch, W, d] -> LSTM layer -> dropout -> ... (num_layers) -> linear -> [batch, W, horizon * d]

The output at step t depends only on input steps 0..t, and holds `horizon` predictions of the d series.
estimator.py uses it two ways (its `scoring` hyperparameter):

- seed (horizon 1): the reference product's reconstruction. The series is cut into non-overlapping sequences of L
  steps; sequence k is the input from which the next one, k+1, is reconstructed step by step, so a last,
  shorter target sequence of r < L steps is reconstructed by the first r outputs.
- paper (horizon l): the paper's predictor. The output at step t predicts the next l values x[t+1..t+l].
  Scoring reads one window of the last L values per time step and keeps the window's last output; training
  reads windows of L steps and learns from every output, those of shorter histories included.
"""

from __future__ import annotations

import torch
from torch import nn


class LstmReconstructor(nn.Module):
    def __init__(self, n_series: int, hidden_size: int, num_layers: int, dropout: float, horizon: int = 1):
        super().__init__()
        self.n_series, self.hidden_size, self.num_layers, self.horizon = n_series, hidden_size, num_layers, horizon
        # nn.LSTM applies dropout between its layers; the extra Dropout covers the last one, so every LSTM
        # layer is followed by dropout as the reference product's description says, and the stack stays one
        # fused (cuDNN) call.
        self.lstm = nn.LSTM(
            n_series, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, horizon * n_series)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x: [batch, W, d] -> [batch, W, horizon * d]; last_only: only the last step's, [batch, horizon * d]."""
        out, _ = self.lstm(x)
        return self.head(self.dropout(out[:, -1] if last_only else out))


def cut_sequences(values: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed training pairs from a [T, d] series: (sequence k, sequence k+1) for every full sequence.

    Returns inputs and targets, each [n - 1, length, d] for the n = T // length full sequences (a partial
    sequence at the end is left out: it has no full target).
    """
    n = len(values) // length
    sequences = values[: n * length].reshape(n, length, values.shape[1])
    return sequences[:-1], sequences[1:]


def input_sequences(values: torch.Tensor, length: int) -> torch.Tensor:
    """The seed inputs that reconstruct every step after the first sequence of a [T, d] series (T > length).

    There are ceil(T / length) - 1 of them, all full: the last one's target may be shorter.
    """
    n = -(-len(values) // length) - 1
    return values[: n * length].reshape(n, length, values.shape[1])


def windows(values: torch.Tensor, length: int) -> torch.Tensor:
    """Every window of `length` consecutive steps of a [T, d] series: [T - length + 1, length, d], a view
    (window i is values[i:i + length]); copy slices of it, not the whole."""
    return values.unfold(0, length, 1).transpose(1, 2)


def window_targets(
    values: torch.Tensor, starts: torch.Tensor, length: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper training pairs: for windows starting at `starts`, inputs [n, length, d] and targets
    [n, length, horizon * d], where the targets at step p are the `horizon` values after the window's step p
    (values[s + p + 1 .. s + p + horizon]). Needs s + length + horizon <= T for every start s."""
    span = windows(values, length + horizon)[starts]  # [n, length + horizon, d]
    ahead = span[:, 1:].unfold(1, horizon, 1)[:, :length]  # [n, length, d, horizon]
    return span[:, :length], ahead.transpose(2, 3).reshape(len(starts), length, -1)
