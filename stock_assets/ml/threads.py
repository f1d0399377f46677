"""PyTorch's thread pools sized per process. Its default (one intra-op thread per core, spinning
while it waits) is fastest for one process alone, and collapses when two processes train on the
same cores: the same Optuna trial took 9 s alone and 765 s beside a second training on 2 cores.
The rule for a deployment: concurrent training runs × threads ≤ cores."""

from __future__ import annotations

import contextlib


def limit_torch_threads(threads: int) -> None:
    """Intra- and inter-op threads of this process. The inter-op pool can only be sized before
    its first parallel work; later calls leave it as it is (these models run no inter-op work)."""
    import torch

    if threads < 1:
        raise ValueError(f"STOCK_ASSETS_TORCH_THREADS must be ≥ 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        with contextlib.suppress(RuntimeError):  # already started in this process
            torch.set_num_interop_threads(threads)
