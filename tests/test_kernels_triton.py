"""Triton kernels on the CPU: run ``triton_interpret_checks.py`` in a subprocess with ``TRITON_INTERPRET=1``.

Triton decides between compiling and interpreting when a kernel is defined, so the interpreter needs a fresh
process with the variable set before ``snn_ext.kernels.triton_ops`` is imported. The interpreter of Triton 3.6
and older cannot run a loop whose bound is a kernel argument (``TypeError: only 0-dimensional arrays can be
converted to Python scalars``; compiled kernels are not affected), so it needs Triton >= 3.7.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_triton_kernels_match_the_reference_under_the_interpreter():
    if os.environ.get("CI") != "true":  # CI installs the dev extra, which brings a recent Triton: never skip there
        triton = pytest.importorskip("triton")
        if tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 7):
            pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run these kernels; it needs >= 3.7")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "triton_interpret_checks.py")],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, summary
