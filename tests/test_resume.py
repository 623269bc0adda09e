"""Exact mid-epoch resume: ``snn_ext.lightning.sampling`` and a killed-and-resumed run (``tests/resume_train.py``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from processes import wait
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from snn_ext.lightning import DigitsDataModule
from snn_ext.lightning.sampling import EpochSampler, ResumableDataLoader

SCRIPT = Path(__file__).with_name("resume_train.py")
EPOCHS, BATCHES_PER_EPOCH, CKPT_EVERY = 3, 21, 10  # 1344 training images, batch 64
KILL_AT_STEP = 33  # epoch 1, its 12th batch; the last checkpoint is at step 30 (epoch 1, 9 batches done)


def loader(size: int = 20, batch_size: int = 3, seed: int = 0, epoch: int = 0) -> ResumableDataLoader:
    data = TensorDataset(torch.arange(size))
    sampler = EpochSampler(data, seed)
    sampler.set_epoch(epoch)
    return ResumableDataLoader(data, batch_size=batch_size, sampler=sampler)


def ids(batches: list) -> list[list[int]]:
    return [batch[0].tolist() for batch in batches]


def take(iterator: Any, count: int) -> list:
    return [next(iterator) for _ in range(count)]


def test_epoch_sampler_order_depends_on_seed_and_epoch_and_shards_round_robin():
    data = range(1344)
    orders = {}
    for seed, epoch in [(0, 0), (0, 1), (1, 0)]:
        sampler = EpochSampler(data, seed)  # type: ignore[arg-type]
        sampler.set_epoch(epoch)
        orders[seed, epoch] = list(sampler)
        assert list(sampler) == orders[seed, epoch]  # reproducible
        assert sorted(orders[seed, epoch]) == list(data)
    assert len({tuple(order) for order in orders.values()}) == 3
    shards = [EpochSampler(data, 0, num_replicas=2, rank=rank) for rank in (0, 1)]  # type: ignore[arg-type]
    for shard in shards:
        shard.set_epoch(1)
    first, second = (list(shard) for shard in shards)
    assert first == orders[0, 1][0::2]
    assert second == orders[0, 1][1::2]
    assert len(shards[0]) == 672
    odd = [EpochSampler(range(7), 5, num_replicas=2, rank=rank) for rank in (0, 1)]  # type: ignore[arg-type]
    whole = list(EpochSampler(range(7), 5))  # type: ignore[arg-type]
    assert [list(shard) for shard in odd] == [whole[0::2], whole[1::2] + whole[:1]]  # padded like DistributedSampler


def test_loader_resumes_mid_epoch_exactly_also_twice():
    full = ids(list(loader(epoch=2)))
    assert len(full) == 7
    assert sorted(sum(full, [])) == list(range(20))

    first = loader(epoch=2)
    seen = ids(take(iter(first), 3))
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    second = loader(epoch=2)  # a fresh process: new loader and sampler, Lightning sets the epoch
    second.load_state_dict(state)
    iterator = iter(second)
    seen += ids(take(iterator, 2))
    assert second.state_dict() == {"epoch": 2, "batches": 5}  # the skipped batches count
    third = loader(epoch=2)
    third.load_state_dict(second.state_dict())
    seen += ids(list(third))
    assert seen == full
    assert ids(list(third)) == full  # the restored position is used once


@pytest.mark.parametrize(
    ("state", "why"),
    [({"epoch": 1, "batches": 3}, "another epoch"), ({"epoch": 2, "batches": 7}, "a finished epoch")],
)
def test_loader_ignores_a_state_that_does_not_apply(state, why):
    restored = loader(epoch=2)
    restored.load_state_dict(state)
    assert ids(list(restored)) == ids(list(loader(epoch=2))), why


def test_loader_skips_by_drawing_batches_without_epoch_sampler():
    data = TensorDataset(torch.arange(10))
    batches = BatchSampler(SequentialSampler(data), batch_size=4, drop_last=False)
    restored = ResumableDataLoader(data, batch_sampler=batches)
    restored.load_state_dict({"epoch": None, "batches": 1})
    assert ids(list(restored)) == [[4, 5, 6, 7], [8, 9]]


def test_digits_train_loader_is_resumable_and_shuffles_each_epoch_differently():
    train = DigitsDataModule(batch_size=64, seed=3).train_dataloader()
    assert isinstance(train, ResumableDataLoader)
    assert isinstance(train.sampler, EpochSampler)
    epochs = []
    for epoch in (0, 1, 0):
        train.sampler.set_epoch(epoch)
        epochs.append(next(iter(train))[1])
    assert not torch.equal(epochs[0], epochs[1])
    assert torch.equal(epochs[0], epochs[2])
    assert not isinstance(DataLoader(TensorDataset(torch.zeros(2))), ResumableDataLoader)


def run(out: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--epochs", str(EPOCHS), "--ckpt-every", str(CKPT_EVERY)]
    return subprocess.Popen([*command, *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_same_tensors(left: Any, right: Any, where: str) -> None:
    """``torch.equal`` on every tensor of two nested dicts/lists; other values compared with ``==``."""
    if isinstance(left, torch.Tensor):
        assert torch.equal(left, right), where
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_same_tensors(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, list | tuple):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same_tensors(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX) for a hard kill")
def test_killed_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    """Deterministic mode: SIGKILL at step 33 (mid epoch 1), resume from ``last.ckpt`` (step 30), run to the end.

    The resumed run must start at the checkpoint's step (not from scratch), train exactly the batches the
    uninterrupted run trained from there on (the rest of epoch 1 in epoch 1's order, then epochs 2), and end
    with bit-identical weights and optimizer state.
    """
    full_dir, killed_dir, resumed_dir = tmp_path / "full", tmp_path / "killed", tmp_path / "resumed"
    full, killed = run(full_dir), run(killed_dir, "--kill-at-step", str(KILL_AT_STEP))
    full_code, full_output = wait(full)
    killed_code, killed_output = wait(killed)
    assert full_code == 0, full_output[-4000:]

    # the killed run really died mid-epoch, hard, before finishing
    assert killed_code == -signal.SIGKILL, killed_output[-4000:]
    kill = json.loads((killed_dir / "killed.json").read_text())
    assert kill == {"step": KILL_AT_STEP, "epoch": 1, "batch_idx": KILL_AT_STEP - BATCHES_PER_EPOCH - 1}
    assert not (killed_dir / "final.pt").exists()
    last = killed_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (30, 1)
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches": 9}]

    resumed_code, resumed_output = wait(run(resumed_dir, "--resume", str(last)))
    assert resumed_code == 0, resumed_output[-4000:]

    full_batches = json.loads((full_dir / "batches.json").read_text())
    killed_batches = json.loads((killed_dir / "batches.json").read_text())
    resumed_batches = json.loads((resumed_dir / "batches.json").read_text())
    assert [step for step, _ in full_batches] == list(range(EPOCHS * BATCHES_PER_EPOCH))
    assert killed_batches == full_batches[:KILL_AT_STEP]
    assert resumed_batches == full_batches[30:]  # steps 30..32 are trained again, from the checkpoint

    want = torch.load(full_dir / "final.pt", weights_only=False)
    got = torch.load(resumed_dir / "final.pt", weights_only=False)
    assert got["start"] == {"step": 30, "epoch": 1}
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"]) == (63, 3)
    assert any(not torch.equal(checkpoint["state_dict"][k], v) for k, v in want["module"].items())  # trained on
    assert_same_tensors(got["module"], want["module"], "state_dict")
    assert_same_tensors(got["optimizer"], want["optimizer"], "optimizer")
