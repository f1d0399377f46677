"""The training loop: seeded, early-stopped on validation. Small enough to read top to bottom."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from stock_assets.ml.dataset import Panel
from stock_assets.ml.networks import Forecaster


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 20
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 64
    arch: str = "lstm"
    max_epochs: int = 30
    patience: int = 4
    seed: int = 0

    def model_params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("max_epochs", "patience")}


@dataclass
class TrainResult:
    model: Forecaster
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    windows_per_second: float
    history: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def tensors(panel: Panel, ends: np.ndarray, seq_len: int, target_scale: float):
    x = torch.from_numpy(panel.inputs(ends, seq_len))
    y = torch.from_numpy(panel.y[ends] / target_scale).float()
    return x, y


def train(
    panel: Panel,
    train_ends: np.ndarray,
    val_ends: np.ndarray,
    config: TrainConfig,
    target_scale: float,
    on_epoch: Callable[[int, float], None] | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Fit on windows ending at `train_ends`; keep the weights of the best validation epoch.

    `on_epoch(epoch, val_loss)` may raise (Optuna's pruner does); `deadline` is a
    time.monotonic() value after which no new epoch starts.
    """
    seed_everything(config.seed)
    model = Forecaster(
        panel.x.shape[2],
        len(panel.tickers),
        config.hidden,
        config.layers,
        config.dropout,
        config.arch,
    )
    x_train, y_train = tensors(panel, train_ends, config.seq_len, target_scale)
    x_val, y_val = tensors(panel, val_ends, config.seq_len, target_scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.MSELoss()
    generator = torch.Generator().manual_seed(config.seed)
    best, best_epoch, best_state, history = float("inf"), -1, None, []
    seen, spent = 0, 0.0
    for epoch in range(config.max_epochs):
        if deadline is not None and time.monotonic() > deadline and best_state is not None:
            break
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        spent += time.perf_counter() - started
        seen += len(order)
        val_loss = evaluate_loss(model, x_val, y_val)
        history.append(val_loss)
        if val_loss < best - 1e-6:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if epoch - best_epoch >= config.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best, best_epoch, len(history), seen / max(spent, 1e-9), history)


@torch.no_grad()
def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(((model(x[i : i + batch]) - y[i : i + batch]) ** 2).sum())
    return total / y.numel()


@torch.no_grad()
def predict_returns(
    model: nn.Module, panel: Panel, ends: np.ndarray, seq_len: int, target_scale: float
) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(ends), 1024):
        x = torch.from_numpy(panel.inputs(ends[i : i + 1024], seq_len))
        out.append(model(x).numpy() * target_scale)
    return np.concatenate(out) if out else np.zeros((0, len(panel.tickers)), np.float32)
