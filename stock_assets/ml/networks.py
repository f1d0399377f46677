"""The forecaster: an LSTM over each ticker's feature sequence, in the old system's three shapes.

Input [batch, seq_len, tickers, features] → next-session log return per ticker [batch, tickers],
in units of the train split's target standard deviation.
- `lstm`: the last hidden state.
- `lstm_attention`: attention over the sequence's hidden states (self-attention pooling).
- `lstm_cross`: the last hidden states of all tickers attend to each other (cross-ticker).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES: tuple[str, ...] = ("lstm", "lstm_attention", "lstm_cross")


class Forecaster(nn.Module):
    def __init__(
        self,
        n_features: int,
        n_tickers: int,
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.0,
        arch: str = "lstm",
    ):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
        self.arch, self.n_tickers = arch, n_tickers
        self.lstm = nn.LSTM(
            n_features, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        if arch == "lstm_attention":
            self.score = nn.Linear(hidden, 1)
        if arch == "lstm_cross":
            heads = 2 if hidden % 2 == 0 else 1
            self.cross = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, seq, t, f = x.shape
        seqs = x.permute(0, 2, 1, 3).reshape(b * t, seq, f)
        states, _ = self.lstm(seqs)  # [b*t, seq, h]
        if self.arch == "lstm_attention":
            weights = torch.softmax(self.score(states), dim=1)
            summary = (weights * states).sum(dim=1) + states[:, -1]
        else:
            summary = states[:, -1]
        summary = summary.reshape(b, t, -1)
        if self.arch == "lstm_cross":
            attended, _ = self.cross(summary, summary, summary)
            summary = self.norm(summary + attended)
        return self.head(self.drop(summary)).squeeze(-1)
