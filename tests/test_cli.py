"""The ``snn-ext`` console script and a reduced end-to-end quickstart."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snn_ext.cli import main

FIELDS = {"method", "framework", "timesteps", "accuracy", "spikes_per_neuron", "energy_pj", "energy_ratio"}


def test_console_script_help():
    script = shutil.which("snn-ext") or str(Path(sys.executable).with_name("snn-ext"))
    for argv in ([script, "--help"], [script, "quickstart", "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "quickstart" in result.stdout
    assert "--framework" in result.stdout
    assert "--output" in result.stdout


def test_bad_options_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["quickstart", "--framework", "brian2"])
    with pytest.raises(SystemExit):
        main(["quickstart", "--ann-epochs", "0"])
    assert "--ann-epochs must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly"])
def test_quickstart_reduced_end_to_end(tmp_path, framework, capsys):
    argv = ["quickstart", "--framework", framework, "--output", str(tmp_path), "--no-progress", "--ann-epochs", "2"]
    argv += ["--finetune-epochs", "1", "--hybrid-epochs", "1", "--sweep", "1", "2"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    methods = [row["method"] for row in rows]
    assert methods == [
        "ann (vgg_small)",
        "distribution_aware",
        "percentile",
        "diet_snn (fine-tuned)",
        "ann (mlp 64-128-10)",
        "hybrid_single_spike",
    ]
    for row in rows:
        assert set(row) == FIELDS
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["energy_pj"] > 0
        assert row["energy_ratio"] > 0
        if row["method"].startswith("ann"):
            assert row["timesteps"] is None
            assert row["spikes_per_neuron"] is None
            assert row["energy_ratio"] == 1.0
        else:
            assert row["framework"] == framework
            assert row["timesteps"] in (2, 5)
            assert row["spikes_per_neuron"] >= 0
    assert (tmp_path / "accuracy_vs_timesteps.png").stat().st_size > 0
    assert (tmp_path / "spike_rates.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "hybrid_single_spike" in table
    assert "energy pJ" in table
