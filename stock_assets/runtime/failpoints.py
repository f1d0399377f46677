"""Failpoints: named places where a test can kill or pause a real process.

Read only from `STOCK_ASSETS_FAILPOINT` (set by tests, never by the platform):
`name=kill` ends the process at once (SIGKILL, as a power cut would), and `name=pause:DIR`
writes `DIR/name.reached` and waits for `DIR/name.release`, so a test can act in between.
Several are separated by commas. Unset, `hit` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

VARIABLE = "STOCK_ASSETS_FAILPOINT"
PAUSE_LIMIT_SECONDS = 300


def _actions() -> dict[str, str]:
    raw = os.environ.get(VARIABLE, "")
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {name.strip(): action.strip() for name, action in pairs}


def hit(name: str) -> None:
    action = _actions().get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("pause:"):
        folder = Path(action.removeprefix("pause:"))
        (folder / f"{name}.reached").touch()
        deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
        while not (folder / f"{name}.release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"failpoint {name}: nobody released {folder}")
            time.sleep(0.02)
    else:
        raise ValueError(f"{VARIABLE}: unknown action {action!r} for {name!r}")
