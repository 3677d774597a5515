"""Every model family through the training and scoring stages: config builders, train_model, the GAN loop
(resume included) and evaluate_model / plot_figures for a model without encoder.

Adding a model family touches three files: its module in models/, its entry in the registry
(pipeline/train/families.py) and its variants in config.yaml. At the end of this file a throwaway family,
written here and registered for one test, goes through every stage a table row does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import call_with_config
from test_training import SIZE, T, assert_same_weights, epoch_of, tiny_config, write_tiny_data
from torch import Tensor

import models
from models.blocks import GaussianHead, StaticDynamicVAE, frame_codec, pixel_nll
from models.interface import SequentialAutoencoder, SequentialVAE
from pipeline.config import ConfigError, validate
from pipeline.data.clips import load_clips
from pipeline.evaluate.table1 import evaluate_model
from pipeline.report.figures import plot_figures, plot_latent_space
from pipeline.train import families
from pipeline.train import loop as training
from pipeline.train.checkpoint import load_model
from pipeline.train.families import FAMILIES, Family, ModelInputs, variant_family, variant_settings
from pipeline.train.judge import train_judge
from pipeline.train.model import train_model

TINY_VARIANTS = {
    "unordered": {"pair_channels": 4},
    "mocogan": {"content_dim": 5, "motion_dim": 3, "noise_dim": 2},
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("tiny"))


def family_config(**train) -> dict:
    config = tiny_config(**train)
    for method, settings in TINY_VARIANTS.items():
        config["variants"][method].update(settings)
    return config


@pytest.mark.parametrize(
    ("method", "config_class"),
    [
        ("full", models.S3VAEConfig),
        ("dsvae", models.DSVAEConfig),
        ("dsvae_full", models.DSVAEConfig),
        ("unordered", models.UnorderedConfig),
        ("mocogan", models.MoCoGANConfig),
        ("dsvae_lstm_f", models.DSVAEConfig),
    ],
)
def test_each_family_builds_its_config_from_the_shared_model_section(tiny_data, method, config_class):
    config = family_config()
    variant = config["variants"][method]
    family = FAMILIES[variant_family(variant)]
    data = load_clips(tiny_data[0], "train")
    attrs = {"name": "tiny", "modality": "video", "frame_shape": (T, SIZE, SIZE, 3)}
    labels = {"grid": config["flow"]["grid"], "direction_grid": config["flow"]["direction_grid"]}
    inputs = ModelInputs(config["model"], variant_settings(variant), data, attrs, labels)
    built = family.config_class(**family.build_config(inputs))
    family_name = variant_family(variant)
    assert isinstance(built, config_class)
    assert (built.in_channels, built.image_size) == (3, SIZE)
    shared = config["model"]
    if family_name == "mocogan":
        assert built.generator_channels == built.discriminator_channels == tuple(shared["conv_channels"])
        assert built.content_dim == 5
        return
    assert built.frame_dim == shared["frame_dim"] and built.static_dim == shared["static_dim"]
    expected_dim = {"unordered": 2, "dsvae_lstm_f": config["variants"]["dsvae_lstm_f"]["dynamic_dim"]}
    assert built.dynamic_dim == expected_dim.get(method, shared["dynamic_dim"])
    if method == "dsvae_lstm_f":  # the variant's own conv widths, a tuple as the dataclass declares
        assert built.conv_channels == tuple(config["variants"]["dsvae_lstm_f"]["conv_channels"])
        assert (built.dynamics, built.likelihood) == ("lstm_f", "bernoulli")
    if method == "dsvae_full":
        assert built.encoder == "full" and built.likelihood == "gaussian"


def test_only_s3vae_trains_on_flow_labels():
    assert [name for name, family in FAMILIES.items() if "flow" in family.labels] == ["s3vae"]
    assert [name for name, family in FAMILIES.items() if family.trainer == "adversarial"] == ["mocogan"]


@pytest.mark.parametrize("family", [models.S3VAE, models.DSVAE, models.Unordered])
def test_every_vae_family_with_priors_offers_the_sequential_vae_interface(family):
    assert issubclass(family, SequentialVAE)


def test_fhvae_offers_the_autoencoder_interface_without_samplers():
    assert issubclass(models.FHVAE, SequentialAutoencoder)
    assert not issubclass(models.FHVAE, SequentialVAE)


@pytest.mark.parametrize("method", ["dsvae", "unordered", "mocogan"])
def test_train_model_trains_and_saves_every_family_without_flow_labels(tiny_data, tmp_path, method):
    config = family_config(epochs=1)
    output = str(tmp_path / "model.pt")
    call_with_config(
        train_model, config, dataset=str(tiny_data[0]), output=output, variant=config["variants"][method]
    )
    model = load_model(tmp_path / "model.pt")
    assert type(model).__name__.lower() == variant_family(config["variants"][method])
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(rows["split"]) == ["train", "test"] and rows["loss"].notna().all()
    if method == "mocogan":
        assert {"d_loss", "g_loss", "d_image", "d_video", "g_image", "g_video"} <= set(rows.columns)


def test_a_rows_own_epochs_override_the_train_section(tiny_data, tmp_path):
    config = family_config(epochs=1)
    config["variants"]["dsvae"]["epochs"] = 2
    variant = config["variants"]["dsvae"]
    call_with_config(
        train_model, config, dataset=str(tiny_data[0]), output=str(tmp_path / "model.pt"), variant=variant
    )
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert rows["epoch"].max() == 2
    assert "epochs" not in variant_settings(variant)  # a training setting, not a model one


def test_s3vae_without_its_flow_labels_names_the_fix(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="labels="):
        config = family_config()
        output = str(tmp_path / "m.pt")
        call_with_config(
            train_model, config, dataset=str(tiny_data[0]), output=output, variant=config["variants"]["full"]
        )


def train_gan(data, out: Path, epochs: int = 3) -> None:
    config = family_config(epochs=epochs)
    call_with_config(
        train_model,
        config,
        dataset=str(data[0]),
        output=str(out / "model.pt"),
        variant=config["variants"]["mocogan"],
    )


def test_gan_loop_resumes_after_a_kill_as_if_uninterrupted(tiny_data, tmp_path, monkeypatch):
    train_gan(tiny_data, tmp_path / "a")
    original = training.train_gan_one_epoch

    def dying_epoch(model, data, optimizers, s, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(model, data, optimizers, s, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(training, "train_gan_one_epoch", dying_epoch)
        with pytest.raises(KeyboardInterrupt):
            train_gan(tiny_data, tmp_path / "b")
    assert epoch_of(tmp_path / "b" / "run" / "checkpoint.pt") == 2
    train_gan(tiny_data, tmp_path / "b")
    assert epoch_of(tmp_path / "b" / "run" / "checkpoint.pt") == 3
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    checkpoint = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=False)
    assert {"model", "d_optimizer", "g_optimizer"} <= set(checkpoint)
    assert len(pd.read_csv(tmp_path / "b" / "run" / "metrics.csv")) == 6  # 3 epochs x 2 splits, none twice


@pytest.fixture(scope="module")
def judge_file(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("judge")
    call_with_config(
        train_judge,
        family_config(),
        dataset=str(tiny_data[0]),
        output=str(out / "judge.pt"),
        accuracy=str(out / "acc.csv"),
    )
    return out / "judge.pt"


@pytest.mark.parametrize("method", ["mocogan", "unordered"])
def test_evaluate_and_plot_every_family(tiny_data, judge_file, tmp_path, method):
    """MoCoGAN has no encoder: it is scored through table1_probabilities and its figures use sampled codes."""
    config = family_config(epochs=1)
    model = tmp_path / "model.pt"
    call_with_config(
        train_model, config, dataset=str(tiny_data[0]), output=str(model), variant=config["variants"][method]
    )
    call_with_config(
        evaluate_model,
        {**config, "evaluate": {**config["evaluate"], "group_size": 2}},
        model=str(model),
        judge=str(judge_file),
        dataset=str(tiny_data[0]),
        output=str(tmp_path / "m.csv"),
        method=method,
    )
    table = pd.read_csv(tmp_path / "m.csv")
    assert {"Acc", "IS", "Acc/fixed_dynamics", "Acc/fixed_static/body"} <= set(table["metric"])
    assert table["value"].notna().all()
    figures = {"swap": str(tmp_path / "swap.png"), "generation": str(tmp_path / "gen.png")}
    call_with_config(
        plot_figures, config, model=str(model), dataset=str(tiny_data[0]), method=method, **figures
    )
    assert all(Path(f).stat().st_size > 0 for f in figures.values())


def test_latent_space_figures_are_the_unordered_models(tiny_data, tmp_path):
    config = family_config(epochs=1)
    data = str(tiny_data[0])
    for name, method in (("u.pt", "unordered"), ("d.pt", "dsvae")):
        variant = config["variants"][method]
        call_with_config(train_model, config, dataset=data, output=str(tmp_path / name), variant=variant)
    outputs = {"grid": str(tmp_path / "grid.png"), "trace": str(tmp_path / "trace.png")}
    call_with_config(
        plot_latent_space, config, model=str(tmp_path / "u.pt"), dataset=data, method="u", **outputs
    )
    assert all(Path(f).stat().st_size > 0 for f in outputs.values())
    with pytest.raises(ValueError, match="family: unordered"):
        call_with_config(
            plot_latent_space, config, model=str(tmp_path / "d.pt"), dataset=data, method="d", **outputs
        )


# --- file 1 of 3, models/framemean.py: the torch module -------------------------------------------------
@dataclass(frozen=True)
class FrameMeanConfig:
    in_channels: int
    image_size: int
    conv_channels: tuple[int, ...]
    frame_dim: int
    static_dim: int
    dynamic_dim: int


class FrameMeanVAE(StaticDynamicVAE):
    """z_f from the mean of the frame features, z_t from frame t alone, N(0, I) priors for both."""

    def __init__(self, config: FrameMeanConfig):
        super().__init__()
        c = self.config = config
        self.frame_encoder, self.decoder = frame_codec(
            "image",
            latent_dim=c.static_dim + c.dynamic_dim,
            frame_dim=c.frame_dim,
            in_channels=c.in_channels,
            image_size=c.image_size,
            conv_channels=c.conv_channels,
        )
        self.static_head = GaussianHead(c.frame_dim, c.static_dim)
        self.dynamic_head = GaussianHead(c.frame_dim, c.dynamic_dim)

    def encode(self, x: Tensor):
        features = self.frame_encoder(x)  # (B, T, D_h)
        return self.static_head(features.mean(dim=1)), self.dynamic_head(features)

    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        return torch.randn(batch, steps, self.config.dynamic_dim, device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor):
        q_static, q_dynamic = self.encode(x)
        return q_static, q_dynamic, self.decode(q_static.rsample(), q_dynamic.rsample())

    def loss(self, x: Tensor, out, targets: dict[str, Tensor], *, dataset_size: int) -> dict[str, Tensor]:
        q_static, q_dynamic, recon = out
        kl = sum(q.kl(q.standard_like(q.mean)).flatten(1).sum(1).mean() for q in (q_static, q_dynamic))
        terms = {"nll": pixel_nll(recon, x, "gaussian"), "kl": kl}
        terms["loss"] = terms["nll"] + terms["kl"]
        return terms


# --- file 2 of 3, pipeline/train/families.py: its registry entry ---------------------------------------
def framemean_config(inputs: ModelInputs) -> dict:
    part = inputs.architecture
    _, H, _, C = (int(v) for v in inputs.attrs["frame_shape"])
    sizes = {k: part[k] for k in ("frame_dim", "static_dim", "dynamic_dim")}
    return {"in_channels": C, "image_size": H, "conv_channels": tuple(part["conv_channels"]), **sizes}


FRAMEMEAN = Family(f"{__name__}:FrameMeanVAE", f"{__name__}:FrameMeanConfig", framemean_config)


# --- file 3 of 3, config.yaml: a variant of it (variants: {framemean: {family: framemean}}) -------------
@pytest.fixture
def registered(monkeypatch) -> dict:
    monkeypatch.setitem(families.FAMILIES, "framemean", FRAMEMEAN)
    config = family_config(epochs=1)
    config["variants"]["framemean"] = {"family": "framemean"}
    config["methods"] = [*config["methods"], "framemean"]
    return config


def test_a_registered_family_is_validated_trained_scored_and_drawn(
    registered, tiny_data, judge_file, tmp_path
):
    validate(registered)
    model = tmp_path / "model.pt"
    data = str(tiny_data[0])
    call_with_config(
        train_model, registered, dataset=data, output=str(model), variant={"family": "framemean"}
    )
    net = load_model(model)
    assert isinstance(net, FrameMeanVAE) and isinstance(net, SequentialVAE)
    scores = tmp_path / "metrics.csv"
    call_with_config(
        evaluate_model, registered, model=str(model), judge=str(judge_file), dataset=data, output=str(scores),
        method="framemean",
    )  # fmt: skip
    assert {"Acc", "IS", "Acc/fixed_dynamics"} <= set(pd.read_csv(scores)["metric"])
    figures = {"swap": str(tmp_path / "swap.png"), "generation": str(tmp_path / "gen.png")}
    call_with_config(plot_figures, registered, model=str(model), dataset=data, method="framemean", **figures)
    assert all(Path(f).stat().st_size > 0 for f in figures.values())


def test_an_unregistered_family_is_refused_with_the_registry_named():
    config = family_config()
    config["variants"]["framemean"] = {"family": "framemean"}
    with pytest.raises(ConfigError, match="pipeline/train/families.py"):
        validate(config)


def test_s3vae_predicts_what_its_label_file_holds():
    from pipeline.train.families import _dfp_target

    flow = {"labeler": "flow-dis", "grid": 8, "direction_grid": 3}
    assert _dfp_target(flow, "flow_topk") == {"dfp_target": "flow_topk", "dfp_classes": 64}
    assert _dfp_target(flow, "flow_direction") == {"dfp_target": "flow_direction", "dfp_classes": 9}
    with pytest.raises(ValueError, match="--forcerun label_flow"):  # labels made before the directions
        _dfp_target({"labeler": "flow-dis", "grid": 8}, "flow_direction")
    landmarks = {
        "labeler": "landmarks-mediapipe",
        "distance_names": ["right_eye", "left_eye", "lips"],
        "distance_mean": [0.09, 0.1, 0.03],
        "distance_std": [0.01, 0.012, 0.02],
    }
    assert _dfp_target(landmarks, "flow_direction") == {  # a face's landmarks whatever the row asks
        "dfp_target": "landmark_distances",
        "dfp_classes": 3,
        "dfp_target_mean": (0.09, 0.1, 0.03),
        "dfp_target_std": (0.01, 0.012, 0.02),
    }
