"""PyTorch's pools follow STOCK_ASSETS_TORCH_THREADS in every process that loads the code (run
workers, the CLI, code servers) and in the tune worker; nonsense is refused by name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import torch
from stock_assets.definitions import build_definitions
build_definitions()
print(torch.get_num_threads(), torch.get_num_interop_threads())
"""


def _probe(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STOCK_ASSETS_TORCH_THREADS"}
    if value is not None:
        env["STOCK_ASSETS_TORCH_THREADS"] = value
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("value, expected", [(None, "1 1"), ("1", "1 1"), ("2", "2 2")])
def test_loading_the_definitions_sizes_the_pools(value, expected):
    result = _probe(value)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == expected


def test_a_thread_count_below_one_is_refused_by_name():
    result = _probe("0")
    assert result.returncode != 0
    assert "STOCK_ASSETS_TORCH_THREADS must be ≥ 1, got 0" in result.stderr
