"""Random neuron calls for the kernel tests: a hypothesis strategy, the inputs, and the comparison to the core.

Shared by ``test_kernels.py`` (CPU backends), ``triton_interpret_checks.py`` (Triton under
``TRITON_INTERPRET=1``, run in a subprocess) and ``test_kernels_gpu.py`` (Triton on CUDA).

Tolerances: spikes, potentials, final potentials and spike times must be bit-identical to the reference in
float32 and float64 (the kernels do the reference's arithmetic in the same order); gradients, whose sums
are reassociated, must agree within ``rtol = atol = 1e-4`` (float32) or ``1e-9`` (float64), ``atol`` scaled
by the largest reference gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from snn_ext import kernels
from snn_ext.core import neuron as core
from snn_ext.core.surrogate import STDB, Box, SpikeTimeRecord, Triangle

GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 5e-2}


@dataclass(frozen=True)
class Case:
    """One call: neuron kind, sequence shape and memory layout, parameters, state and which gradients flow."""

    fire_once: bool
    shape: tuple[int, ...]  # [T, B, ...]
    layout: str  # contiguous | channels_last | strided | time_inner
    dtype: torch.dtype
    leak_kind: str  # float | scalar | channel
    threshold_kind: str
    surrogate: Triangle | Box | STDB
    with_state: bool  # start from a given potential (fire-once: and a record with earlier spikes)
    potentials: bool
    grad_outputs: tuple[str, ...]  # among spikes, potentials, final
    grad_inputs: tuple[str, ...]  # among x, u, leak, threshold
    seed: int


@st.composite
def cases(draw, dtypes=(torch.float32, torch.float64), max_steps: int = 5, max_size: int = 5) -> Case:
    """Odd and tiny sizes, T = 1, every layout, scalar and per-channel parameters, all surrogates."""
    fire_once = draw(st.booleans())
    steps, batch = draw(st.integers(1, max_steps)), draw(st.integers(1, 4))
    rank = draw(st.sampled_from(["flat", "conv1d", "conv2d"]))
    spatial = {"flat": 0, "conv1d": 1, "conv2d": 2}[rank]
    channels = draw(st.integers(1, max_size))
    shape = (steps, batch, channels, *(draw(st.integers(1, max_size)) for _ in range(spatial)))
    layouts = ["contiguous", "strided", "time_inner"] + (["channels_last"] if spatial else [])
    surrogates = [
        st.builds(Triangle, st.floats(0.1, 1.0)),
        st.builds(Box, st.floats(0.2, 1.5), st.floats(0.5, 2.0)),
    ]
    if fire_once:
        surrogates.append(st.builds(STDB, st.floats(0.1, 1.0), st.floats(0.01, 1.0)))
    potentials = draw(st.booleans())
    outputs = ["spikes", "final"] + (["potentials"] if potentials else [])
    with_state = draw(st.booleans())
    inputs = ["x", "leak", "threshold"] + (["u"] if with_state else [])
    return Case(
        fire_once=fire_once,
        shape=shape,
        layout=draw(st.sampled_from(layouts)),
        dtype=draw(st.sampled_from(dtypes)),
        leak_kind=draw(st.sampled_from(["float", "scalar", "channel"])),
        threshold_kind=draw(st.sampled_from(["float", "scalar", "channel"])),
        surrogate=draw(st.one_of(*surrogates)),
        with_state=with_state,
        potentials=potentials,
        grad_outputs=tuple(draw(st.lists(st.sampled_from(outputs), min_size=1, max_size=3, unique=True))),
        grad_inputs=tuple(draw(st.lists(st.sampled_from(inputs), min_size=0, max_size=4, unique=True))),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A copy of ``t`` (``[T, B, C, ...]``) with the same values in the given memory layout."""
    if layout == "channels_last":
        return t.movedim(2, -1).contiguous().movedim(-1, 2)
    if layout == "strided":  # every other element of a wider tensor: not dense, the kernels copy it
        wide = torch.empty((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "time_inner":  # [B, T, ...] storage: the steps are not stacked along T
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    return t.contiguous()


def _param(kind: str, channels: int, low: float, high: float, dtype: torch.dtype, device: str, gen: torch.Generator):
    if kind == "float":
        return float(torch.empty(()).uniform_(low, high, generator=gen))
    shape = (channels,) if kind == "channel" else ()
    return torch.empty(shape, dtype=torch.float64).uniform_(low, high, generator=gen).to(dtype).to(device)


def make_inputs(case: Case, device: str = "cpu") -> dict[str, object]:
    """Leaves ``x``, ``u`` (or ``None``), ``leak``, ``threshold``, the prior spike times and output gradients."""
    gen = torch.Generator().manual_seed(case.seed)
    steps, _, channels = case.shape[:3]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(case.dtype).to(device)

    x = _laid_out(randn(*case.shape) * 0.8 + 0.35, case.layout)
    step_shape = case.shape[1:]
    u = _laid_out((randn(*step_shape) * 0.5).unsqueeze(0), case.layout)[0] if case.with_state else None
    times = None
    if case.fire_once and case.with_state:  # a record three steps in: some neurons fired at step 0, 1 or 2
        fired = torch.rand(step_shape, generator=gen) < 0.3
        early = torch.randint(0, 3, step_shape, generator=gen).to(case.dtype)
        times = torch.where(fired, early, float("inf")).to(device)
    inputs = {
        "x": x,
        "u": u,
        "leak": _param(case.leak_kind, channels, 0.5, 1.0, case.dtype, device, gen),
        "threshold": _param(case.threshold_kind, channels, 0.3, 1.3, case.dtype, device, gen),
        "times": times,
        "grad": {name: randn(*(step_shape if name == "final" else case.shape)) for name in case.grad_outputs},
    }
    for name in case.grad_inputs:
        if isinstance(inputs[name], torch.Tensor):
            inputs[name].requires_grad_(True)
    return inputs


def _fresh_state(inputs: dict[str, object]) -> core.SingleSpikeState | None:
    """A state three steps into a sequence (its own record: every call writes into its state's record)."""
    if inputs["u"] is None:
        return None
    record = SpikeTimeRecord(inputs["u"])
    record.times, record.steps = inputs["times"].clone(), 3
    return core.SingleSpikeState(inputs["u"], record, 3)


def run(case: Case, inputs: dict[str, object], backend: str) -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    """Outputs of one call (``"reference"`` = the core functions themselves) and the input gradients."""
    x, u, leak, threshold = inputs["x"], inputs["u"], inputs["leak"], inputs["threshold"]
    if backend == "reference":
        diet, single_spike, kwargs = core.diet_lif_multistep, core.single_spike_lif_multistep, {}
    else:
        diet, single_spike = kernels.diet_lif_multistep, kernels.single_spike_lif_multistep
        kwargs = {"potentials": case.potentials}
    with kernels.use_backend("auto" if backend == "reference" else backend):
        if case.fire_once:
            out = single_spike(x, _fresh_state(inputs), leak, threshold, case.surrogate, **kwargs)
            state = out.state
            result = {"spikes": out.spikes, "potentials": out.potentials, "final": state.u}
            result.update(times=state.record.times, steps=state.record.steps, step=state.step)
        else:
            out = diet(x, u, leak, threshold, case.surrogate, **kwargs)
            result = {"spikes": out.spikes, "potentials": out.potentials, "final": out.final}
    leaves = {name: inputs[name] for name in case.grad_inputs if isinstance(inputs[name], torch.Tensor)}
    grads = {}
    if leaves:
        loss = sum((result[name] * g).sum() for name, g in inputs["grad"].items() if result[name] is not None)
        values = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads = dict(zip(leaves, values, strict=True))
    return result, grads


def assert_matches_reference(case: Case, backend: str, device: str = "cpu", exact: bool = True) -> None:
    """Run ``case`` on ``backend`` and on the core; values bit-identical (or close), gradients close."""
    inputs = make_inputs(case, device)
    ref, ref_grads = run(case, inputs, "reference")
    got, got_grads = run(case, inputs, backend)
    tol = GRAD_TOLERANCE[case.dtype]
    value_tol = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": tol, "atol": tol}
    names = ["spikes", "final"] + (["potentials"] if case.potentials else [])
    names += ["times", "steps", "step"] if case.fire_once else []
    for name in names:
        if isinstance(ref[name], torch.Tensor):
            torch.testing.assert_close(got[name], ref[name], **value_tol, msg=lambda m, n=name: f"{n}: {m}")
        else:
            assert got[name] == ref[name], name
    if not case.potentials:
        assert got["potentials"] is None
    assert got_grads.keys() == ref_grads.keys()
    for name, ref_grad in ref_grads.items():
        if ref_grad is None:
            assert got_grads[name] is None or not got_grads[name].any(), name
            continue
        scale = max(1.0, float(ref_grad.abs().max()))
        torch.testing.assert_close(
            got_grads[name], ref_grad, rtol=tol, atol=tol * scale, msg=lambda m, n=name: f"d/d{n}: {m}"
        )
