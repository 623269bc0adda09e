"""Child Python processes of the tests (DDP, kill-and-resume): wait with a time limit, fail with their output."""

from __future__ import annotations

import subprocess

import pytest


def wait(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    """``(exit status, output)`` of ``process``; the test fails with the output's end if it runs past ``timeout`` s."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{process.args} timed out:\n{output[-4000:]}")
    return process.returncode, output
