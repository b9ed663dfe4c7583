"""Choosing an image's exit again under another exit mode or policy (issue 13, item 17).

A new threshold or exit mode needs no network run for the exits already computed: every
exit of a whole-image result keeps the signals the policy reads
(:attr:`rbqe.engine.ExitResult.signals`), so the policy walks them again. The network
runs only when the new choice lies beyond the computed exits (``more``): it continues
from the kept network state, or, once that is freed (the view left the screen), runs the
whole image again, every exit a walk may need in that one run (the worker's
``_rechoose``). Plain Python: the worker calls it in its thread, tests call it directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from rbqe.engine import EnhanceResult
from rbqe.exit_policy import Decision, ExitMode, ExitPolicy, parse_exit_mode, walk
from rbqe.model import NUM_EXITS

MoreExits = Callable[[int], None]  # compute the exits after the last one, up to this one


def forced(exit_: int) -> Decision:
    """The decision of a forced exit (as :class:`rbqe.engine.Enhancer` words it)."""
    return Decision(True, exit_, "forced", {"exit": exit_}, f"exit {exit_} was asked for")


def rechoose(result: EnhanceResult, policy: ExitPolicy, mode: ExitMode, more: MoreExits) -> None:
    """Set ``result``'s mode, policy, per-exit decisions and chosen exit for ``mode``
    under ``policy``, calling ``more(k)`` only for exits beyond those computed.

    All or nothing: the choice is set once every exit it needs is there. When ``more``
    fails (a Stop cancels it), ``result`` keeps the choice it had, its exits' verdicts
    too, with the exits computed meanwhile (a Stop keeps them, as Compute all's): half
    of a new choice (its mode and the verdicts, the exit still the old choice's) read
    "Exit 4 was asked for" beside "Chosen exit: Exit 2".

    Raises:
        ValueError: ``result`` lacks the signals of an exit (tiled, or read from files).
    """
    mode = parse_exit_mode(mode)
    had = len(result.exits)
    try:
        chosen, decision = _choose(result, policy, mode, more)
    except BaseException:
        # The exits added meanwhile came with the new rule's verdicts: the old rule's
        if len(result.exits) > had and result.policy is not None:
            with contextlib.suppress(ValueError):
                _redecide(result, result.policy)
        raise
    result.mode, result.policy = mode, policy
    result.threshold, result.min_exit = policy.threshold, policy.min_exit  # type: ignore[assignment]
    _redecide(result, policy)
    result.chosen, result.decision = chosen, decision


def _choose(result: EnhanceResult, policy: ExitPolicy, mode: ExitMode,
            more: MoreExits) -> tuple[int, Decision]:
    """The exit ``mode`` chooses under ``policy`` and why, after ``more`` has computed
    the exits it needs; nothing of ``result`` but its exits is changed."""
    if isinstance(mode, int):
        if mode > len(result.exits):
            more(mode)
        return mode, forced(mode)
    while True:
        d = walk(policy, _signals(result), result.prior, result.gray_input)
        if d.stop or len(result.exits) >= NUM_EXITS:
            break
        before = len(result.exits)
        more(before + 1)
        if len(result.exits) <= before:
            raise RuntimeError("no further exit was computed")
    if mode == "all" and len(result.exits) < NUM_EXITS:
        more(NUM_EXITS)
    return (d.exit if d.stop else NUM_EXITS), d


def _signals(result: EnhanceResult) -> list:
    exits = sorted(result.exits, key=lambda e: e.exit)
    if [e.exit for e in exits] != list(range(1, len(exits) + 1)) or \
            any(e.signals is None for e in exits):
        raise ValueError("the exits' signals are not all known: choose by running again")
    return [e.signals for e in exits]


def _redecide(result: EnhanceResult, policy: ExitPolicy) -> None:
    """Each exit's verdict under ``policy`` (the cards show it, stop or go on)."""
    signals = _signals(result)
    for e in result.exits:
        e.decision = policy.decide(signals[: e.exit], result.prior, gray=result.gray_input)
