"""Shared by the conformance tests: a training step compiled with ``torch.compile`` against the same step eager."""

from collections.abc import Callable

import torch
import torch._dynamo
from torch import nn

Step = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(neuron, x_seq) -> (spikes, loss)``."""


def spikes_and_loss(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``spikes`` and a loss that weighs every spike differently (so every gradient entry is tested)."""
    return spikes, (spikes * torch.linspace(-1, 1, spikes.numel()).view_as(spikes)).sum()


def breaks(fn: Callable, *args: object) -> int:
    """Dynamo's graph-break count for ``fn(*args)``."""
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args).graph_break_count


def assert_compiled_equals_eager(
    step: Step, eager: nn.Module, compiled: nn.Module, x_seq: torch.Tensor, fullgraph: bool = True
) -> None:
    """Spikes equal and gradients (input and parameters) close, ``compiled`` run through ``torch.compile``
    (``aot_eager``: Dynamo and AOTAutograd, the graph capture, without Inductor's compile time)."""
    x1, x2 = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    spikes, loss = step(eager, x1)
    loss.backward()
    torch._dynamo.reset()
    c_spikes, c_loss = torch.compile(lambda x: step(compiled, x), fullgraph=fullgraph, backend="aot_eager")(x2)
    c_loss.backward()
    assert spikes.sum() > 0
    assert torch.equal(spikes, c_spikes)
    torch.testing.assert_close(x1.grad, x2.grad)
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
