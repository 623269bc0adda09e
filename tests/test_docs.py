"""The README's snippets run as written, and CI runs exactly the README's setup commands."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PY_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", PY_BLOCKS, ids=[f"block{i}" for i in range(len(PY_BLOCKS))])
def test_readme_python_snippet_runs(code):
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_readme_has_snippets_for_both_frameworks():
    assert any("snn_ext.snntorch" in block for block in PY_BLOCKS)
    assert any("snn_ext.spikingjelly" in block for block in PY_BLOCKS)


def test_ci_runs_exactly_the_readme_setup_and_test_commands():
    setup = 'python -m venv .venv && .venv/bin/pip install -e ".[dev]"'
    bash_blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]
    assert bash_blocks[:2] == [
        f"{setup} && .venv/bin/snn-ext quickstart --output quickstart",
        f"{setup} && .venv/bin/python -m pytest",
    ]
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci_commands == bash_blocks[1:2]


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
