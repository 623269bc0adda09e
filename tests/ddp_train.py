"""Fine-tune a small converted SNN on the digits with Lightning on 1 or N CPU processes; write the result as JSON.

Run by ``tests/test_distributed.py`` (Lightning's ``strategy="ddp"`` re-launches this script for the other
ranks, which does not work from inside pytest)::

    python tests/ddp_train.py --devices 2 --batch-size 32 --out result.json

With ``--devices N`` the per-process batch is ``--batch-size``, so the global batch is ``N * batch_size``.
Rank 0 writes ``--out``: the validation accuracy Lightning logged (``val/acc`` of the last epoch), the
accuracy recomputed on rank 0 over the whole test split, the accuracy expected from the validation shards of
all ranks and of rank 0 alone, the accuracy before fine-tuning and the optimizer steps; next to it (suffix
``.pt``) the net's ``state_dict`` before and after fine-tuning.

``build_snn`` and ``digits_data`` are shared with ``tests/resume_train.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

import snn_ext
from snn_ext.lightning import DigitsDataModule, SNNModule

# 1797 digits: 453 test and 1344 = 21 * 64 training images, so that every global batch of 64 holds the
# same images whether it is drawn by one process or split over two (no short last batch, no padding).
TEST_SIZE = 0.252
GLOBAL_BATCH = 64


def digits_data(batch_size: int, seed: int) -> DigitsDataModule:
    """The digits DataModule with ``TEST_SIZE``, already set up."""
    data = DigitsDataModule(batch_size=batch_size, seed=seed, test_size=TEST_SIZE)
    data.setup("fit")
    return data


def build_snn(data: DigitsDataModule, seed: int) -> nn.Module:
    """A 64-32-10 MLP pre-trained for a few full-batch Adam steps, converted (percentile, T=3, snnTorch).

    The pre-training is short on purpose: the SNN starts at a modest accuracy, so the fine-tuning moves it.
    """
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    assert data.train_set is not None
    images, labels = data.train_set.tensors
    optimizer = torch.optim.Adam(ann.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(ann(images), labels).backward()
        optimizer.step()
    return snn_ext.convert(ann.eval(), data.calibration_batches(), method="percentile", timesteps=3)


def correct(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image correctness ``[M]`` (bool) of ``net`` in eval mode; the mode is restored after."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        hits = net(images).argmax(1) == labels
    net.train(was_training)
    return hits


def shard_indices(size: int, processes: int, rank: int) -> list[int]:
    """The test images Lightning's validation ``DistributedSampler`` gives ``rank`` (in order, padded)."""
    return list(DistributedSampler(range(size), num_replicas=processes, rank=rank, shuffle=False))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Parse the options, fine-tune, validate and write the JSON result from rank 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=GLOBAL_BATCH, help="per process")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # same arithmetic in every process, and no oversubscription of the CPUs
    L.seed_everything(args.seed, workers=True, verbose=False)
    data = digits_data(args.batch_size, args.seed)
    net = build_snn(data, args.seed)
    x_test, y_test = data.test_tensors()
    initial_accuracy = correct(net, x_test, y_test).float().mean().item()
    initial_weights = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    module = SNNModule(net)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",  # DDP on CPU uses gloo
        deterministic=True,
        max_epochs=args.epochs,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    if trainer.global_rank != 0:
        return
    hits = correct(module.net, x_test, y_test).float()
    shards = [shard_indices(len(y_test), args.devices, rank) for rank in range(args.devices)]
    result = {
        "devices": args.devices,
        "world_size": trainer.world_size,
        "batch_size": args.batch_size,
        "global_steps": trainer.global_step,
        "initial_accuracy": initial_accuracy,
        "logged_val_acc": trainer.callback_metrics["val/acc"].item(),
        "accuracy": hits.mean().item(),
        "expected_synced_val_acc": hits[[i for shard in shards for i in shard]].mean().item(),
        "expected_rank0_val_acc": hits[shards[0]].mean().item(),
    }
    args.out.write_text(json.dumps(result, indent=2))
    torch.save({"initial": initial_weights, "final": module.net.state_dict()}, args.out.with_suffix(".pt"))


if __name__ == "__main__":
    main()
