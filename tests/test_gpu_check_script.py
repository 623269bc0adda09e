"""``benchmarks/gpu_check.sh``, the one GPU run of the project: valid bash, and its steps fit in 8 minutes."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_parses_and_its_step_limits_add_up_to_at_most_8_minutes():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    limits = {name: int(seconds) for name, seconds in re.findall(r"^\s*step (\w+) (\d+) ", SCRIPT.read_text(), re.M)}
    assert {"device", "tests", "recipe", "neurons", "training"} <= set(limits), limits
    limits.pop("install")  # only where no Python with torch exists; it needs the package index
    assert sum(limits.values()) <= 8 * 60, limits
