"""Triton kernels under Triton's interpreter (CPU tensors), against the core reference.

Not collected by the main run: ``test_kernels_triton.py`` runs this file in a subprocess with
``TRITON_INTERPRET=1``, which Triton reads when the kernels are defined (so before any import of them).
Tolerances: as ``kernel_cases.py`` states (bit-identical values, gradients within 1e-4 / 1e-9).
"""

import os

import pytest
import torch
from hypothesis import given, settings
from kernel_cases import Case, assert_matches_reference, cases

from snn_ext import kernels
from snn_ext.core.surrogate import STDB
from snn_ext.kernels import triton_ops

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_kernels_triton.py (needs TRITON_INTERPRET=1)", allow_module_level=True)


def test_kernels_are_interpreted():
    assert triton_ops.INTERPRETED


@settings(max_examples=200, deadline=None)
@given(case=cases(max_steps=4, max_size=4))
def test_triton_matches_reference_on_random_cases(case):
    assert_matches_reference(case, "triton")


def test_fire_once_with_all_gradients_and_a_prior_record():
    case = Case(True, (3, 2, 3, 4, 5), "channels_last", torch.float32, "channel", "channel", STDB(0.5, 0.2), True,
                True, ("spikes", "potentials", "final"), ("x", "u", "leak", "threshold"), 7)  # fmt: skip
    assert_matches_reference(case, "triton")


def test_auto_keeps_cpu_tensors_on_the_cpu_kernels():
    x = torch.rand(2, 3, 4, requires_grad=True)
    out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
    assert type(out.spikes.grad_fn).__name__ == "_FusedLIFBackward"
    assert kernels.current_backend() == "auto"
