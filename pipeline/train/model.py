"""Stage `train_model`: one variant of any family (a table row) on a video dataset, with one training seed.

Also the pieces every training stage shares: `train_settings` (a config section as `TrainSettings`),
`row_settings` (with a row's own epochs and learning rate), `fit_and_save` (the run directory,
then the model file) and `vae_loss_fn` (a VAE family's negative ELBO).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.config import FromConfig, resolve_bf16, resolve_device
from pipeline.data import h5io
from pipeline.data.clips import ClipSet, load_clips
from pipeline.data.factors import judge_heads
from pipeline.evaluate import heads
from pipeline.train import distributed
from pipeline.train.checkpoint import save_model
from pipeline.train.families import ModelInputs, family, variant_family, variant_settings
from pipeline.train.loop import TrainSettings, fit, fit_gan

logger = logging.getLogger(__name__)


def train_settings(part: Mapping, *, seed: int, device: str) -> TrainSettings:
    """Training settings from one config section (`train`, `judge`, `audio.train`), the seed and device."""
    device = distributed.rank_device(resolve_device(device))
    return TrainSettings(
        epochs=part["epochs"],
        batch_size=part["batch_size"],
        lr=part["lr"],
        bf16=resolve_bf16(part["bf16"], device),
        compile=part.get("compile", False),
        device=device,
        seed=seed,
        lr_schedule=part["lr_schedule"],
        lr_floor=part["lr_floor"],
    )


def row_settings(variant: Mapping, train: Mapping, *, seed: int, device: str) -> TrainSettings:
    """A table row's training settings: its `train` section's, with the row's own epochs and learning rate
    where its variant sets them (`families.TRAINING_KEYS`)."""
    own = {key: variant[key] for key in ("epochs", "lr") if variant.get(key)}
    return dataclasses.replace(train_settings(train, seed=seed, device=device), **own)


def fit_and_save(
    model,
    family_name: str,
    loss_fn,
    train_set,
    test_set,
    settings: TrainSettings,
    output: str,
    inputs: Mapping[str, str | None],
    before_save: Callable[[nn.Module], None] | None = None,
) -> None:
    """Train in the run directory beside `output` (checkpoint, metrics, TensorBoard), then save the model.
    `inputs` names the files the clips came from by role: a checkpoint made from other files is never
    resumed. An adversarial family (`loss_fn` None) is trained by `fit_gan`. With several ranks, rank 0
    saves, after `before_save` (the judge's calibration) has seen the trained model."""
    run = {
        "inputs": inputs,
        "model": model,
        "train_set": train_set,
        "test_set": test_set,
        "settings": settings,
        "run_dir": Path(output).parent / "run",
        "run_config": {"model": dataclasses.asdict(model.config), "train": dataclasses.asdict(settings)},
    }
    if loss_fn is None:
        fit_gan(**run)
    else:
        fit(loss_fn=loss_fn, **run)
    if distributed.world().main:
        if before_save is not None:
            before_save(model)
        save_model(output, family_name, model)


def vae_loss_fn(train_set: ClipSet):
    """The negative ELBO of a VAE family, with the targets S3VAE's regularisers read prepared (the other
    families ignore them)."""
    n_train = len(train_set)
    # Regressed states are standardised with training statistics, so positions in pixels and angles in
    # radians weigh alike.
    states = {name: train_set.targets[name] for name in train_set.trajectories}
    moments = {name: (s.mean(dim=(0, 1)), s.std(dim=(0, 1)).clamp_min(1e-6)) for name, s in states.items()}
    # A group of labels (SMMNIST's two digits) has no order: its heads learn the digits' distribution.
    groups = [h for h in judge_heads(train_set.factors) if len(h.members) > 1]

    def loss_fn(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        for name, (mean, std) in moments.items():
            targets[name] = (targets[name] - mean.to(x.device)) / std.to(x.device)
        for head in groups:
            targets[head.name] = heads.target_distribution(head, targets)
        return net.loss(x, net(x), targets, dataset_size=n_train)

    return loss_fn


@distributed.data_parallel
def train_model(
    *,
    dataset: str,
    output: str,
    variant: dict,
    training_seed: int = 0,
    labels: str | None = None,
    architecture: dict = FromConfig("model"),
    train: dict = FromConfig("train"),
    test_sequences: int | None = FromConfig("evaluate.max_sequences"),
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """Train `variant` (a `variants` entry of any family) on `dataset`; write the model to `output`.

    Training seed k (0 .. train.seeds - 1) trains with seed `seed + k`: the k-th of a row's repeated
    trainings, each from its own initialisation, data order and noise. A family that trains on pseudo labels
    (S3VAE: the flow labels) reads them from `labels`. The run directory beside `output` keeps the resumable
    checkpoint, metrics.csv and TensorBoard logs.
    """
    torch.manual_seed(seed + training_seed)
    name = variant_family(variant)
    chosen = family(name)
    if chosen.labels and labels is None:
        raise ValueError(
            f"{name} trains on {', '.join(chosen.labels)} labels: pass labels= (results/labels/...)"
        )
    train_set = load_clips(dataset, "train", labels=labels, limit=train["max_sequences"])
    test_set = load_clips(dataset, "test", labels=labels, limit=test_sequences)
    label_attrs = h5io.read_attrs(labels) if labels else {}
    inputs = ModelInputs(
        architecture, variant_settings(variant), train_set, h5io.read_attrs(dataset), label_attrs
    )
    model = chosen.build(inputs)
    logger.info("training %s on %d clips: %s", name, len(train_set), model.config)
    settings = row_settings(variant, train, seed=seed + training_seed, device=device)
    loss_fn = None if chosen.trainer == "adversarial" else vae_loss_fn(train_set)
    inputs = {"dataset": dataset, "labels": labels}
    fit_and_save(model, name, loss_fn, train_set, test_set, settings, output, inputs)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(train_model)
