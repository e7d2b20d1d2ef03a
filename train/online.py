"""The online time loop shared by the float and the grid training paths (SAF-E, OTTT_O, OTTT_A): one forward
step, its loss, backward and (except OTTT_A, which accumulates over the T steps) an optimizer step per time step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Update:
    """How one minibatch updates the network: its optimizer, the hook after_backward(t) called after each
    backward (None: none), and whether the optimizer steps (False: gradients only)."""
    optimizer: object
    after_backward: Optional[Callable] = None
    step_optimizer: bool = True


def online_steps(step: Callable, st, T: int, method: str, optimizer, loss_of: Callable, after_backward,
                 update) -> tuple:
    """(summed logits, summed loss, final state); step(st) -> (logits of this step, next state);
    loss_of(logits) -> the step's loss against the batch's labels (before the 1/T)."""
    total, loss_sum = 0.0, 0.0
    if method == "ottt-a":
        optimizer.zero_grad(set_to_none=True)
    for t in range(1, T + 1):
        o, st = step(st)
        loss = loss_of(o) / T
        if method != "ottt-a":
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward:
            after_backward(t)
        if method != "ottt-a":
            update()
        total = total + o.detach()
        loss_sum += float(loss.detach())
    if method == "ottt-a":
        update()
    return total, loss_sum, st


def backward_and_update(loss, optimizer, after_backward, update, t: int) -> None:
    """One whole-sequence update (SAF-F's last step, BPTT): zero the gradients, backward, the hook, the step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward:
        after_backward(t)
    update()
