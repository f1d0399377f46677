"""Pure rules over the promotion journal: which versions an undo walks back through.

Production's history is a stack. A move forward (bootstrap, promotion, repair) pushes the new
version; a rollback pops back to its target. So after 1 → 2 → 3, two rollbacks land on 1 and
a third finds nothing to undo, however the rows' `previous_version` columns read.
"""

from __future__ import annotations

from dataclasses import dataclass


class NothingToUndo(ValueError):
    """The current version replaced nothing that an undo could return to."""


@dataclass(frozen=True)
class Move:
    previous: str | None
    new: str
    action: str  # bootstrap | promote | demote | rollback | repair


def production_stack(moves: list[Move]) -> list[str]:
    """The versions an undo walks back through, oldest first; the last one serves."""
    stack: list[str] = []
    for move in moves:
        if move.action == "rollback" and move.new in stack:
            del stack[stack.index(move.new) + 1 :]
        elif not stack or stack[-1] != move.new:
            stack.append(move.new)
    return stack


def ever_served(moves: list[Move]) -> set[str]:
    return {m.new for m in moves}


def undo_target(moves: list[Move], current: str, to: str | None = None) -> str:
    """The version a rollback moves to: the one before `current` on the stack, or `to`, which
    must have served before (an undone version may be returned to as well)."""
    stack = production_stack(moves)
    if stack and stack[-1] != current:
        # the alias moved outside the journal: the journal's top is what it last knew
        stack.append(current)
    if to is not None:
        if to == current:
            raise NothingToUndo(f"version {to} already holds production")
        if to not in ever_served(moves):
            raise NothingToUndo(f"version {to} never held production: promote it instead")
        return to
    if len(stack) < 2:
        raise NothingToUndo(
            f"version {current} replaced nothing that is left to undo "
            f"(history: {' → '.join(stack) or 'empty'})"
        )
    return stack[-2]
