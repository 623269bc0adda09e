"""Fine-tune the small converted SNN of ``tests/ddp_train.py`` in deterministic mode; optionally die or resume.

Run by ``tests/test_resume.py``::

    python tests/resume_train.py --out DIR                         # uninterrupted
    python tests/resume_train.py --out DIR --kill-at-step 33       # SIGKILLs itself after 33 optimizer steps
    python tests/resume_train.py --out DIR --resume CKPT           # resumes from a checkpoint, runs to the end

Checkpoints go to ``DIR/checkpoints`` every ``--ckpt-every`` optimizer steps (plus ``last.ckpt``). Every
run writes ``DIR/batches.json`` as it trains: one ``[step, sha1 of the batch]`` per trained batch (``step``
is the optimizer steps done before the batch). A killed run writes ``DIR/killed.json`` (step, epoch and
batch index at the kill) just before ``SIGKILL``; a finished run writes ``DIR/final.pt``: the
LightningModule's ``state_dict``, the optimizer's ``state_dict`` and the step, epoch and loaded checkpoint
of the start.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp_train import GLOBAL_BATCH, build_snn, digits_data  # noqa: E402

from snn_ext.lightning import SNNModule  # noqa: E402


def batch_sha1(batch: Any) -> str:
    """SHA-1 of a batch ``(images, labels)``."""
    digest = hashlib.sha1()
    for tensor in batch:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Recorder(Callback):
    """Appends ``[step, sha1]`` of each trained batch to ``path`` (rewritten every batch, so a kill keeps it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[tuple[int, str]] = []
        self.start: dict[str, int] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = {"step": trainer.global_step, "epoch": trainer.current_epoch}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batches.append((trainer.global_step, batch_sha1(batch)))
        self.path.write_text(json.dumps(self.batches))


class KillAtStep(Callback):
    """``SIGKILL`` this process at the end of the batch that completes optimizer step ``step``.

    Lightning runs ``ModelCheckpoint`` after the other callbacks, so a checkpoint due at ``step`` is *not*
    written: the last checkpoint is the one before, and the steps since are lost, as in a real crash.
    """

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            info = {"step": trainer.global_step, "epoch": trainer.current_epoch, "batch_idx": batch_idx}
            self.path.write_text(json.dumps(info))
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def main(argv: list[str] | None = None) -> None:
    """Parse the options, train (or resume) and write the outputs described in the module docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ckpt-every", type=int, default=10, help="optimizer steps between checkpoints")
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    L.seed_everything(args.seed, workers=True, verbose=False)
    data = digits_data(GLOBAL_BATCH, args.seed)
    module = SNNModule(build_snn(data, args.seed))
    recorder = Recorder(args.out / "batches.json")
    callbacks: list[Callback] = [
        recorder,
        ModelCheckpoint(args.out / "checkpoints", every_n_train_steps=args.ckpt_every, save_top_k=-1, save_last=True),
    ]
    if args.kill_at_step is not None:
        callbacks.append(KillAtStep(args.kill_at_step, args.out / "killed.json"))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        deterministic=True,
        max_epochs=args.epochs,
        limit_val_batches=0,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data, ckpt_path=args.resume)
    final = {
        "module": module.state_dict(),
        "optimizer": trainer.optimizers[0].state_dict(),
        "start": recorder.start,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
    }
    torch.save(final, args.out / "final.pt")


if __name__ == "__main__":
    main()
