"""Stages `train_model` (a video model variant), `train_audio_model` (S3VAE, DSVAE or FHVAE on speech
features) and `train_judge` (the classifier that scores video models)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

import models
from pipeline.config import resolve_bf16, resolve_device
from pipeline.data import h5io
from pipeline.data.clips import ClipSet, load_clips
from pipeline.data.h5io import atomic_path
from pipeline.evaluate import heads
from pipeline.evaluate.heads import JudgeHead
from pipeline.train.loop import TrainSettings, autocast, fit, fit_gan

logger = logging.getLogger(__name__)


def save_model(path: str | os.PathLike, family: str, model: nn.Module) -> None:
    with atomic_path(path) as tmp:
        torch.save(
            {"family": family, "config": dataclasses.asdict(model.config), "state_dict": model.state_dict()},
            tmp,
        )


def load_model(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: train it first (snakemake {path})")
    saved = torch.load(path, map_location=device, weights_only=False)
    model = models.build(saved["family"], saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


def variant_of(config: dict, method: str) -> tuple[str, dict]:
    """The family of a `variants` entry and its model settings (unset ones and the row's `epochs` dropped)."""
    training = ("epochs", "seeds", "lr")  # how the row is trained, not model settings
    settings = {k: v for k, v in config["variants"][method].items() if v is not None and k not in training}
    return settings.pop("family", "s3vae"), settings


def _frame_architecture(config: dict, attrs: dict) -> dict:
    """What every family takes from the data and the shared `model` section: frame size and conv widths."""
    T, H, W, C = (int(v) for v in attrs["frame_shape"])
    return {"in_channels": C, "image_size": H, "conv_channels": tuple(config["model"]["conv_channels"])}


def _vae_architecture(config: dict, settings: dict, attrs: dict) -> dict:
    """The shared `model` section for a VAE family, overridden by the variant's own settings. The frame
    likelihood is the dataset's (`model.likelihood`), so that a table's rows differ in their model, not in
    their likelihood, unless a variant sets its own."""
    part = config["model"]
    shared = {
        **_frame_architecture(config, attrs),
        "frame_dim": part["frame_dim"],
        "hidden_dim": part["hidden_dim"],
        "static_dim": part["static_dim"],
        "dynamic_dim": part["dynamic_dim"],
        "likelihood": part["likelihood"].get(str(attrs["name"]), "gaussian"),
        "pixel_sigma": part["pixel_sigma"],
    }
    return {**shared, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}}


def s3vae_config(config: dict, settings: dict, data: ClipSet, attrs: dict) -> models.S3VAEConfig:
    """An S3VAE row: shared architecture plus the variant's regulariser weights."""
    label_heads = heads.judge_heads(data.factors)
    grid = config["flow"]["grid"]
    return models.S3VAEConfig(
        dfp_classes=grid * grid,
        static_classes={h.name: h.n_classes for h in label_heads if h.kind == "static"},
        dynamic_classes={h.name: h.n_classes for h in label_heads if h.kind == "dynamic"},
        dynamic_regression={name: data.targets[name][0, 0].numel() for name in data.trajectories},
        **_vae_architecture(config, settings, attrs),
    )


def dsvae_config(config: dict, settings: dict, data: ClipSet, attrs: dict) -> models.DSVAEConfig:
    """A DSVAE row (factorised or full q; stochastic or LSTM-f / LSTM-c dynamics)."""
    return models.DSVAEConfig(**_vae_architecture(config, settings, attrs))


def unordered_config(config: dict, settings: dict, data: ClipSet, attrs: dict) -> models.UnorderedConfig:
    """The unordered-frames model (Helminger et al.): the shared architecture, z of the variant's size."""
    return models.UnorderedConfig(**_vae_architecture(config, settings, attrs))


def mocogan_config(config: dict, settings: dict, data: ClipSet, attrs: dict) -> models.MoCoGANConfig:
    """MoCoGAN: the shared conv widths for G_I, D_I and D_V; code sizes from the variant (50, 10, 10)."""
    frame = _frame_architecture(config, attrs)
    channels = frame.pop("conv_channels")
    return models.MoCoGANConfig(
        **frame, generator_channels=channels, discriminator_channels=channels, **settings
    )


@dataclass(frozen=True)
class Family:
    build_config: Callable[[dict, dict, ClipSet, dict], object]  # (config, variant, data, dataset attrs)
    adversarial: bool = False  # trained by `fit_gan`, else by `fit` on the family's negative ELBO
    flow_labels: bool = False  # trains on the optical-flow pseudo labels (S3VAE's DFP term)
    encoder: bool = True  # has a posterior q(z_f, z_1:T | x) to keep latents of real clips from


FAMILIES = {
    "s3vae": Family(s3vae_config, flow_labels=True),
    "dsvae": Family(dsvae_config),
    "unordered": Family(unordered_config),
    "mocogan": Family(mocogan_config, adversarial=True, encoder=False),
}


def seeds_of(config: dict, method: str) -> list[int]:
    """The training seeds of row `method`: its own `seeds` count where it sets one, else train.seeds."""
    return list(range(config["variants"][method].get("seeds") or config["train"]["seeds"]))


def family_of(config: dict, method: str) -> Family:
    return FAMILIES[variant_of(config, method)[0]]


def build_model(config: dict, method: str, train_set: ClipSet, attrs: dict) -> tuple[str, nn.Module]:
    """(family name, untrained model) of row `method` for a dataset with root attributes `attrs`."""
    family_name, settings = variant_of(config, method)
    model_config = FAMILIES[family_name].build_config(config, settings, train_set, attrs)
    return family_name, models.FAMILIES[family_name][1](model_config)


def train_settings(config: dict, part: dict, training_seed: int = 0) -> TrainSettings:
    """Training settings from one config section (`train`, `judge`, `audio/train`) and the global keys.

    `training_seed` k (0 .. train.seeds - 1) trains with seed `seed + k`: the k-th of a row's repeated
    trainings, each from its own initialisation, data order and noise."""
    device = resolve_device(config["device"])
    return TrainSettings(
        epochs=part["epochs"],
        batch_size=part["batch_size"],
        lr=part["lr"],
        bf16=resolve_bf16(part["bf16"], device),
        compile=part.get("compile", False),
        device=device,
        seed=config["seed"] + training_seed,
        lr_schedule=part["lr_schedule"],
        lr_floor=part["lr_floor"],
    )


def fit_and_save(
    model, family: str, loss_fn, train_set, test_set, settings: TrainSettings, output: str
) -> None:
    """Train in the run directory beside `output` (checkpoint, metrics, TensorBoard), then save the model.
    With `loss_fn` None the model is a GAN, trained adversarially by `fit_gan`."""
    run = {
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
    save_model(output, family, model)


def vae_loss_fn(train_set: ClipSet):
    """The negative ELBO of a VAE family, with the targets S3VAE's regularisers read prepared (the other
    families ignore them)."""
    n_train = len(train_set)
    # Regressed states are standardised with training statistics, so positions in pixels and angles in
    # radians weigh alike.
    states = {name: train_set.targets[name] for name in train_set.trajectories}
    moments = {name: (s.mean(dim=(0, 1)), s.std(dim=(0, 1)).clamp_min(1e-6)) for name, s in states.items()}
    # A group of labels (SMMNIST's two digits) has no order: its heads learn the digits' distribution.
    groups = [h for h in heads.judge_heads(train_set.factors) if len(h.members) > 1]

    def loss_fn(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        for name, (mean, std) in moments.items():
            targets[name] = (targets[name] - mean.to(x.device)) / std.to(x.device)
        for head in groups:
            targets[head.name] = heads.target_distribution(head, targets)
        return net.loss(x, net(x), targets, dataset_size=n_train)

    return loss_fn


def train_model(
    *, dataset: str, output: str, config: dict, method: str, seed: int = 0, labels: str | None = None
) -> None:
    """Train `method` (a `variants` entry of any family) on `dataset` with training seed `seed` (see
    `_settings`); write the model to `output`.

    S3VAE rows also read the flow labels (`labels`). The run directory beside `output` keeps the
    resumable checkpoint, metrics.csv and TensorBoard logs.
    """
    torch.manual_seed(config["seed"] + seed)
    family_name = variant_of(config, method)[0]
    family = FAMILIES[family_name]
    if family.flow_labels and labels is None:
        raise ValueError(f"{method} ({family_name}) trains on flow labels: pass labels= (results/labels/...)")
    train_set = load_clips(dataset, "train", labels=labels, limit=config["train"]["max_sequences"])
    test_set = load_clips(dataset, "test", labels=labels, limit=config["evaluate"]["max_sequences"])
    family_name, model = build_model(config, method, train_set, h5io.read_attrs(dataset))
    logger.info("training %s (%s) on %d clips: %s", method, family_name, len(train_set), model.config)
    loss_fn = None if family.adversarial else vae_loss_fn(train_set)
    row = config["variants"][method]
    settings = dataclasses.replace(
        train_settings(config, config["train"], seed),
        epochs=row.get("epochs") or config["train"]["epochs"],
        lr=row.get("lr") or config["train"]["lr"],
    )
    fit_and_save(model, family_name, loss_fn, train_set, test_set, settings, output)


def audio_model(config: dict, method: str, dim: int, train_set: ClipSet, feature_dim: int, T: int):
    """(family, model) of one audio row: S3VAE (a variant's weights, silence as L_DFP), DSVAE (factorised
    or full q) or FHVAE (alpha), both latents `dim`-dimensional."""
    spec = config["audio"]["models"][method]
    part = config["audio"]["model"]
    if spec["family"] == "fhvae":
        n_sequences = int(train_set.targets["sequence_index"].max()) + 1
        return "fhvae", models.FHVAE(
            models.FHVAEConfig(
                feature_dim=feature_dim,
                segment_frames=T,
                hidden_dim=part["hidden_dim"],
                static_dim=dim,
                dynamic_dim=dim,
                num_sequences=n_sequences,
                alpha=spec["alpha"],
            )
        )
    vector_frames = {
        "frame_kind": "vector",
        "feature_dim": feature_dim,
        "frame_dim": part["frame_dim"],
        "hidden_dim": part["hidden_dim"],
        "static_dim": dim,
        "dynamic_dim": dim,
    }
    if spec["family"] == "dsvae":
        return "dsvae", models.DSVAE(models.DSVAEConfig(**vector_frames, encoder=spec["encoder"]))
    weights = variant_of(config, spec["variant"])[1]
    return "s3vae", models.S3VAE(
        models.S3VAEConfig(**vector_frames, dfp_target="silence", dfp_classes=1, **weights)
    )


def index_sequences(train_set: ClipSet, test_set: ClipSet) -> None:
    """Add FHVAE's targets: `sequence_index`, each training segment's row in the mu2 table (-1 for test
    segments, whose utterances have no row), and `sequence_segments`, the segments of its utterance."""
    for data, seen in ((train_set, True), (test_set, False)):
        ids = data.targets["sequence_id"]
        _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        data.targets["sequence_index"] = inverse if seen else torch.full_like(ids, -1)
        data.targets["sequence_segments"] = counts[inverse]


def train_audio_model(*, dataset: str, labels: str, output: str, config: dict, method: str, dim: int) -> None:
    """Train audio row `method` (config `audio/models`) with `dim`-d latents on `dataset` and its silence
    labels; write the model to `output` (run directory beside it, as `train_model`)."""
    torch.manual_seed(config["seed"])
    train_set = load_clips(dataset, "train", labels=labels)
    test_set = load_clips(dataset, "test", labels=labels)
    index_sequences(train_set, test_set)
    T, feature_dim = (int(v) for v in h5io.read_attrs(dataset)["frame_shape"])
    family, model = audio_model(config, method, dim, train_set, feature_dim, T)
    n_train = len(train_set)

    def loss_fn(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        return net.loss(x, net(x), targets, dataset_size=n_train)

    logger.info("training %s (%d-d latents) on %d segments: %s", method, dim, n_train, model.config)
    fit_and_save(
        model, family, loss_fn, train_set, test_set, train_settings(config, config["audio"]["train"]), output
    )


def judge_loss_fn(judge_heads: list[JudgeHead]):
    """Training loss of a judge: the sum of its heads' cross-entropies (pipeline/evaluate/heads.py)."""

    def judge_loss(net: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = net(x)
        terms = {f"ce_{h.name}": heads.head_loss(h, logits[h.name], targets) for h in judge_heads}
        terms["loss"] = sum(terms.values())
        return terms

    return judge_loss


@torch.no_grad()
def judge_accuracy(
    judge: nn.Module, data: ClipSet, *, batch_size: int, device: str, bf16: bool
) -> dict[str, float]:
    """Accuracy of each judge head on real clips (a group head must name the whole multiset)."""
    correct = {h.name: 0 for h in heads.judge_heads(data.factors)}
    for x, targets in data.batches(batch_size, shuffle=False, device="cpu"):
        with autocast(device, bf16):
            probs = heads.probabilities(judge(x.to(device)))
        labels = {name: t.numpy() for name, t in targets.items()}
        for head in heads.judge_heads(data.factors):
            correct[head.name] += int(heads.correct(head, probs[head.name], labels).sum())
    return {name: n / len(data) for name, n in correct.items()}


def train_judge(*, dataset: str, output: str, accuracy: str, config: dict) -> None:
    """Train the judge on the real training clips (the dataset's `judge_train` split where it has one);
    write it and its per-head test accuracy (CSV)."""
    torch.manual_seed(config["seed"])
    train_set = load_clips(dataset, h5io.judge_training_split(dataset))
    test_set = load_clips(dataset, "test")
    T, H, W, C = (int(v) for v in h5io.read_attrs(dataset)["frame_shape"])
    part = config["judge"]
    judge_config = models.JudgeConfig(
        in_channels=C,
        image_size=H,
        conv_channels=tuple(part["conv_channels"]),
        frame_dim=part["frame_dim"],
        hidden_dim=part["hidden_dim"],
        heads={h.name: h.n_classes for h in heads.judge_heads(train_set.factors)},
    )
    judge = models.Judge(judge_config)
    settings = train_settings(config, config["judge"])
    loss = judge_loss_fn(heads.judge_heads(train_set.factors))
    fit_and_save(judge, "judge", loss, train_set, test_set, settings, output)
    judge.eval()
    scores = judge_accuracy(
        judge, test_set, batch_size=settings.batch_size, device=settings.device, bf16=settings.bf16
    )
    logger.info("judge test accuracy: %s", scores)
    name = str(h5io.read_attrs(dataset)["name"])
    table = pd.DataFrame(
        {"dataset": name, "head": list(scores), "accuracy": list(scores.values()), "n": len(test_set)}
    )
    with atomic_path(accuracy) as tmp:
        table.to_csv(tmp, index=False)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(train_model, train_audio_model, train_judge)
