"""LSTM-AD (Malhotra et al., ESANN 2015): a stacked LSTM that reconstructs a multivariate series.

    sequence k [batch, L, d] -> LSTM layer -> dropout -> ... (num_layers) -> linear -> [batch, L, d]
                                                                             = reconstruction of sequence k+1

The series is cut into non-overlapping sequences of L steps; sequence k is the input from which the next
one, k+1, is reconstructed. The output at step t of a sequence depends only on input steps 0..t, so a last,
shorter target sequence of r < L steps is reconstructed by the first r outputs.
"""

from __future__ import annotations

import torch
from torch import nn


class LstmReconstructor(nn.Module):
    def __init__(self, n_series: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.n_series, self.hidden_size, self.num_layers = n_series, hidden_size, num_layers
        # nn.LSTM applies dropout between its layers; the extra Dropout covers the last one, so every LSTM
        # layer is followed by dropout as the seed describes, and the stack stays one fused (cuDNN) call.
        self.lstm = nn.LSTM(n_series, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_series)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, L, d], one sequence per row -> [batch, L, d], the reconstruction of the next ones."""
        out, _ = self.lstm(x)
        return self.head(self.dropout(out))


def cut_sequences(values: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs from a [T, d] series: (sequence k, sequence k+1) for every full sequence.

    Returns inputs and targets, each [n - 1, length, d] for the n = T // length full sequences (a partial
    sequence at the end is left out: it has no full target).
    """
    n = len(values) // length
    sequences = values[:n * length].reshape(n, length, values.shape[1])
    return sequences[:-1], sequences[1:]


def input_sequences(values: torch.Tensor, length: int) -> torch.Tensor:
    """The inputs that reconstruct every step after the first sequence of a [T, d] series (T > length).

    There are ceil(T / length) - 1 of them, all full: the last one's target may be shorter.
    """
    n = -(-len(values) // length) - 1
    return values[:n * length].reshape(n, length, values.shape[1])
