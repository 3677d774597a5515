"""The training loop every model shares: seeded, resumable, logged (torchvision references / dinov2 shape).

`fit` runs `train_one_epoch` and `evaluate` per epoch and writes, in `run_dir`:
- `checkpoint.pt`: model, optimiser, scheduler, epoch, step and the run's identity, after every epoch
  (atomically; pipeline/train/checkpoint.py);
- `metrics.csv` and `tensorboard/`: every loss term per epoch for both splits.
An interrupted run resumes after its last finished epoch when the config, the input files and the code are
the same; anything else (a finished run too) trains afresh and says why. Each epoch reseeds torch from
(seed, epoch), so a resumed run follows the same data order and noise as an uninterrupted one.
`fit_gan` trains a GAN (MoCoGAN) through the same epoch loop (`run_epochs`), with one Adam per player.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.data.clips import ClipSet
from pipeline.files import atomic_path
from pipeline.train import checkpoint, distributed

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, dict[str, Tensor]], dict[str, Tensor]]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    bf16: bool = False
    compile: bool = False
    device: str = "cpu"
    seed: int = 0
    lr_schedule: str = "constant"  # "constant", or "cosine" from lr down to lr_floor * lr at the last step
    lr_floor: float = 0.1


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, schedule: str, floor: float) -> float:
    """The learning rate at `step` as a fraction of the configured one.

    "constant" keeps it (C-DSVAE trains Sprites so). "cosine" decays it to `floor`: a decay to 0 spends the
    last quarter of a short run below 15% of the rate, where the model barely moves."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule '{schedule}': use one of {LR_SCHEDULES}")


def autocast(device: str, bf16: bool):
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()


SYNC_EVERY = 50  # steps between host reads of the loss (NaN check, progress bar): each waits for the GPU


class TermSums:
    """Running sums of loss terms weighted by batch size, kept on the device: the host reads them only in
    `check` (every SYNC_EVERY steps) and `means` (once an epoch), so a GPU step never waits for it."""

    def __init__(self):
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, Tensor], count: int) -> None:
        for name, value in terms.items():
            weighted = value.detach().float() * count
            self.sums[name] = self.sums[name] + weighted if name in self.sums else weighted
        self.count += count

    def check(self, epoch: int, bar=None) -> None:
        """Stop on a non-finite loss (every rank at once: the loss is summed over them); show the running
        mean loss on the bar."""
        if "loss" not in self.sums:
            return
        total = distributed.all_sum(torch.stack([self.sums["loss"], self._count_tensor()]))
        loss = total[0].item() / max(total[1].item(), 1)
        if not math.isfinite(loss):
            terms = {name: value.item() / self.count for name, value in self.sums.items()}
            raise FloatingPointError(f"non-finite loss in epoch {epoch + 1} (running means {terms})")
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.1f}", refresh=False)

    def _count_tensor(self) -> Tensor:
        like = next(iter(self.sums.values()))
        return torch.tensor(float(self.count), device=like.device)

    def means(self) -> dict[str, float]:
        """The mean of each term over every clip of every rank."""
        if not self.sums:
            return {}
        names = list(self.sums)
        total = distributed.all_sum(torch.stack([*(self.sums[n] for n in names), self._count_tensor()]))
        count = max(total[-1].item(), 1)
        return {name: value / count for name, value in zip(names, total[:-1].tolist(), strict=True)}


def _epoch_batches(data: ClipSet, s: TrainSettings, epoch: int):
    """The epoch's shuffled training batches (the order is seeded from the seed and the epoch), with a bar."""
    generator = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
    w = distributed.world()
    batches = data.batches(
        s.batch_size,
        shuffle=True,
        generator=generator,
        device=s.device,
        drop_last=True,
        shard=(w.rank, w.size),
    )
    return tqdm(
        batches,
        total=len(data) // s.batch_size,
        desc=f"epoch {epoch + 1}/{s.epochs}",
        unit="batch",
        mininterval=5,
        leave=False,
        disable=not w.main,
    )


def _update(optimizer, loss: Tensor, parameters) -> None:
    """One optimiser step on `loss`, its gradients averaged over the ranks (a non-finite loss is caught by
    TermSums.check within SYNC_EVERY steps, before the epoch's checkpoint is written)."""
    parameters = list(parameters)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(parameters)
    nn.utils.clip_grad_norm_(parameters, 1e4)
    optimizer.step()


def train_one_epoch(
    model, loss_fn: LossFn, data: ClipSet, optimizer, scheduler, s: TrainSettings, epoch: int
):
    model.train()
    sums = TermSums()
    bar = _epoch_batches(data, s, epoch)
    for step, (x, targets) in enumerate(bar, start=1):
        with autocast(s.device, s.bf16):
            terms = loss_fn(model, x, targets)
        _update(optimizer, terms["loss"], model.parameters())
        scheduler.step()
        sums.add(terms, len(x))
        if step % SYNC_EVERY == 0:
            sums.check(epoch, bar)
    sums.check(epoch)
    return sums.means()


@torch.no_grad()
def evaluate(model, loss_fn: LossFn, data: ClipSet, s: TrainSettings) -> dict[str, float]:
    model.eval()
    sums = TermSums()
    w = distributed.world()
    for x, targets in data.batches(s.batch_size, shuffle=False, device=s.device, shard=(w.rank, w.size)):
        with autocast(s.device, s.bf16):
            terms = loss_fn(model, x, targets)
        sums.add(terms, len(x))
    return sums.means()


class MetricsLog:
    """metrics.csv (one row per epoch and split) plus TensorBoard scalars."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.csv"
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def epoch(self, done: int, epochs: int, train: dict, test: dict, seconds: tuple, clips: int) -> None:
        """Epoch `done`'s rows of both splits (`seconds`: train, test), and its log line."""
        self.write(done, "train", train, seconds[0])
        self.write(done, "test", test, seconds[1])
        logger.info(
            "epoch %d/%d: train loss %.2f, test loss %.2f, %.0f clips/s",
            *(done, epochs, train["loss"], test["loss"], clips / seconds[0]),
        )

    def write(self, epoch: int, split: str, terms: dict[str, float], seconds: float) -> None:
        row = {"epoch": epoch, "split": split, "seconds": round(seconds, 2), **terms}
        exists = self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if not exists:
                writer.writeheader()
            writer.writerow(row)
        for name, value in terms.items():
            self.tensorboard.add_scalar(f"{split}/{name}", value, epoch)
        self.tensorboard.flush()


def _drop_rows_after(path: Path, epoch: int) -> None:
    """Keep the metrics.csv rows of epochs up to `epoch`: a run killed after logging an epoch but before
    its checkpoint was written repeats that epoch on resume, and must not log it twice."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [row for row in reader if int(row["epoch"]) <= epoch]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _start_run(run_dir: Path, run_config: dict, identity: dict, state: dict, device: str) -> int:
    """The epoch to start from. Resume on rank 0 (which sets aside a checkpoint of another run), then on the
    others, which find what rank 0 left: every rank starts from the same state. Rank 0 keeps the metrics of
    the epochs resumed, or clears those of a run set aside (metrics.csv and TensorBoard's events), and
    records the run in config.json (its config, its inputs' and its code's sha256)."""
    w = distributed.world()
    path = run_dir / "checkpoint.pt"
    start_epoch = checkpoint.resume(path, identity, state, device) if w.main else 0
    if w.main and start_epoch:
        _drop_rows_after(run_dir / "metrics.csv", start_epoch)
    elif w.main:
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    if w.main:
        recorded = {**run_config, "inputs": identity["inputs"], "code": identity["code"]}
        (run_dir / "config.json").write_text(json.dumps(recorded, indent=2))
    distributed.barrier()
    if not w.main:
        start_epoch = checkpoint.resume(path, identity, state, device, read_only=True)
    return start_epoch


def run_epochs(
    *,
    run_dir: str | os.PathLike,
    run_config: dict,
    settings: TrainSettings,
    state: dict,
    train_epoch: Callable[[int], dict[str, float]],
    test_epoch: Callable[[], dict[str, float]],
    steps_per_epoch: int,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> None:
    """The epoch loop every trainer shares: resume, per-epoch seeding, logging and checkpoints.

    `state` names what a checkpoint holds ({"model": ..., "optimizer": ...}: anything with `state_dict`
    and `load_state_dict`); `train_epoch(epoch)` and `test_epoch()` return the epoch's mean loss terms,
    with the total under "loss". `inputs` names the files the run reads by role ({"dataset": path, ...}):
    with `run_config` and the code they make the run's identity, which a checkpoint must carry to be
    resumed (pipeline/train/checkpoint.py). `after_epoch(epochs_done)` runs after each epoch's checkpoint
    (the budget curve scores the model there).
    """
    s = settings
    w = distributed.world()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = checkpoint.run_identity(run_config, inputs or {})
    checkpoint_path = run_dir / "checkpoint.pt"
    start_epoch = _start_run(run_dir, run_config, identity, state, s.device)
    log = MetricsLog(run_dir) if w.main else None
    for epoch in range(start_epoch, s.epochs):
        torch.manual_seed(s.seed * 100_003 + epoch + 1_000_003 * w.rank)  # each rank its own noise
        started = time.perf_counter()
        try:
            train_terms = train_epoch(epoch)
        except FloatingPointError as err:
            raise FloatingPointError(
                f"{err}. The last good state is {checkpoint_path} (epoch {epoch}); lower train.lr or turn off"
                " train.bf16, then rerun to resume from it."
            ) from err
        train_seconds = time.perf_counter() - started
        test_terms = test_epoch()
        if not w.main:
            continue
        seconds = (train_seconds, time.perf_counter() - started - train_seconds)
        log.epoch(epoch + 1, s.epochs, train_terms, test_terms, seconds, steps_per_epoch * s.batch_size)
        checkpoint.save_checkpoint(
            checkpoint_path,
            state,
            epochs_done=epoch + 1,
            step=(epoch + 1) * steps_per_epoch,
            identity=identity,
            finished=epoch + 1 == s.epochs,
        )
        if after_epoch is not None:
            after_epoch(epoch + 1)
    if log is not None:
        log.tensorboard.close()
    distributed.barrier()  # the other ranks finish when rank 0 has written the last checkpoint


def steps_per_epoch(train_set: ClipSet, s: TrainSettings) -> int:
    """Full batches per epoch (the last partial one is dropped); a split under one batch is an error."""
    if len(train_set) < s.batch_size:
        raise ValueError(
            f"the training split has {len(train_set)} clips, fewer than one batch of {s.batch_size}: "
            "lower the batch_size of this stage's train section in the config, or use more data"
        )
    distributed.check_batch(s.batch_size)
    return len(train_set) // s.batch_size


def fit(
    *,
    model: nn.Module,
    loss_fn: LossFn,
    train_set: ClipSet,
    test_set: ClipSet,
    settings: TrainSettings,
    run_dir: str | os.PathLike,
    run_config: dict,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train `model` for `settings.epochs` epochs, resuming from `run_dir/checkpoint.pt` when it is this
    run's (`run_config`, the files `inputs` names and the code) and unfinished."""
    s = settings
    model = distributed.prepare_model(model, s.device).to(s.device)
    train_set, test_set = train_set.resident(s.device), test_set.resident(s.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    steps = steps_per_epoch(train_set, s)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, s.epochs * steps, s.lr_schedule, s.lr_floor)
    )
    step_model = torch.compile(model) if s.compile else model
    run_epochs(
        run_dir=run_dir,
        run_config=run_config,
        settings=s,
        state={"model": model, "optimizer": optimizer, "scheduler": scheduler},
        train_epoch=lambda epoch: train_one_epoch(
            step_model, loss_fn, train_set, optimizer, scheduler, s, epoch
        ),
        test_epoch=lambda: evaluate(step_model, loss_fn, test_set, s),
        steps_per_epoch=steps,
        inputs=inputs,
        after_epoch=after_epoch,
    )
    return model


# --- adversarial training (MoCoGAN) -----------------------------------------------------------------------
GAN_BETAS = (0.5, 0.999)  # Adam's betas as MoCoGAN trains (the DCGAN setting)


def _gan_terms(d_terms: dict[str, Tensor], g_terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """Both players' terms in one dict; "loss" (their sum) is only what the log and the NaN check read."""
    merged = {k: v for terms in (d_terms, g_terms) for k, v in terms.items() if k != "loss"}
    return {
        **merged,
        "d_loss": d_terms["loss"],
        "g_loss": g_terms["loss"],
        "loss": d_terms["loss"] + g_terms["loss"],
    }


def gan_losses(model: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Both players' losses on real clips x and fresh fakes, no update: the test split's `LossFn`."""
    B, T = x.shape[:2]
    fake = model.generate(B, T)
    return _gan_terms(model.discriminator_loss(x, fake), model.generator_loss(fake))


def train_gan_one_epoch(model, data: ClipSet, optimizers, s: TrainSettings, epoch: int) -> dict[str, float]:
    """Per batch, one discriminator step on real clips and fakes generated without a graph, then one
    generator step on a fresh fake batch (MoCoGAN's alternating updates, one of each per batch)."""
    d_optimizer, g_optimizer = optimizers
    model.train()
    sums = TermSums()
    bar = _epoch_batches(data, s, epoch)
    for step, (x, _) in enumerate(bar, start=1):
        B, T = x.shape[:2]
        with autocast(s.device, s.bf16):
            with torch.no_grad():
                fake = model.generate(B, T)
            d_terms = model.discriminator_loss(x, fake)
        _update(d_optimizer, d_terms["loss"], model.discriminator_parameters())
        with autocast(s.device, s.bf16):
            g_terms = model.generator_loss(model.generate(B, T))
        _update(g_optimizer, g_terms["loss"], model.generator_parameters())
        sums.add(_gan_terms(d_terms, g_terms), B)
        if step % SYNC_EVERY == 0:
            sums.check(epoch, bar)
    sums.check(epoch)
    return sums.means()


def fit_gan(
    *,
    model: nn.Module,
    train_set: ClipSet,
    test_set: ClipSet,
    settings: TrainSettings,
    run_dir: str | os.PathLike,
    run_config: dict,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> nn.Module:
    """Train a GAN (`generate`, `discriminator_loss`, `generator_loss`, `*_parameters`) with one Adam per
    player at the constant rate `settings.lr` (MoCoGAN used 0.0002); checkpoints, resume and seeding are
    `fit`'s (`run_epochs`)."""
    s = settings
    model = distributed.prepare_model(model, s.device).to(s.device)
    train_set, test_set = train_set.resident(s.device), test_set.resident(s.device)
    d_optimizer = torch.optim.Adam(model.discriminator_parameters(), lr=s.lr, betas=GAN_BETAS)
    g_optimizer = torch.optim.Adam(model.generator_parameters(), lr=s.lr, betas=GAN_BETAS)
    run_epochs(
        run_dir=run_dir,
        run_config=run_config,
        settings=s,
        state={"model": model, "d_optimizer": d_optimizer, "g_optimizer": g_optimizer},
        train_epoch=lambda epoch: train_gan_one_epoch(model, train_set, (d_optimizer, g_optimizer), s, epoch),
        test_epoch=lambda: evaluate(model, gan_losses, test_set, s),
        steps_per_epoch=steps_per_epoch(train_set, s),
        inputs=inputs,
    )
    return model
