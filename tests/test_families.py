"""Every model family through the training and scoring stages: config builders, train_model, the GAN loop
(resume included) and evaluate_model / plot_figures for a model without encoder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_training import SIZE, T, assert_same_weights, epoch_of, tiny_config, write_tiny_data

import models
from pipeline.data.clips import load_clips
from pipeline.evaluate.table1 import evaluate_model
from pipeline.report.figures import plot_figures, plot_latent_space
from pipeline.train import loop as training
from pipeline.train.stages import FAMILIES, load_model, train_judge, train_model, variant_of

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
    family_name, settings = variant_of(config, method)
    data = load_clips(tiny_data[0], "train")
    attrs = {"name": "tiny", "frame_shape": (T, SIZE, SIZE, 3)}
    built = FAMILIES[family_name].build_config(config, settings, data, attrs)
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
    assert [name for name, family in FAMILIES.items() if family.flow_labels] == ["s3vae"]
    assert [name for name, family in FAMILIES.items() if family.adversarial] == ["mocogan"]


@pytest.mark.parametrize("method", ["dsvae", "unordered", "mocogan"])
def test_train_model_trains_and_saves_every_family_without_flow_labels(tiny_data, tmp_path, method):
    train_model(
        dataset=str(tiny_data[0]),
        output=str(tmp_path / "model.pt"),
        config=family_config(epochs=1),
        method=method,
    )
    model = load_model(tmp_path / "model.pt")
    assert type(model).__name__.lower() == variant_of(family_config(), method)[0]
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(rows["split"]) == ["train", "test"] and rows["loss"].notna().all()
    if method == "mocogan":
        assert {"d_loss", "g_loss", "d_image", "d_video", "g_image", "g_video"} <= set(rows.columns)


def test_a_rows_own_epochs_override_the_train_section(tiny_data, tmp_path):
    config = family_config(epochs=1)
    config["variants"]["dsvae"]["epochs"] = 2
    train_model(dataset=str(tiny_data[0]), output=str(tmp_path / "model.pt"), config=config, method="dsvae")
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert rows["epoch"].max() == 2
    assert "epochs" not in variant_of(config, "dsvae")[1]  # a training setting, not a model one


def test_s3vae_without_its_flow_labels_names_the_fix(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="labels="):
        train_model(
            dataset=str(tiny_data[0]), output=str(tmp_path / "m.pt"), config=family_config(), method="full"
        )


def train_gan(data, out: Path, epochs: int = 3) -> None:
    train_model(
        dataset=str(data[0]),
        output=str(out / "model.pt"),
        config=family_config(epochs=epochs),
        method="mocogan",
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
    train_judge(
        dataset=str(tiny_data[0]),
        output=str(out / "judge.pt"),
        accuracy=str(out / "acc.csv"),
        config=family_config(),
    )
    return out / "judge.pt"


@pytest.mark.parametrize("method", ["mocogan", "unordered"])
def test_evaluate_and_plot_every_family(tiny_data, judge_file, tmp_path, method):
    """MoCoGAN has no encoder: it is scored through table1_probabilities and its figures use sampled codes."""
    config = family_config(epochs=1)
    model = tmp_path / "model.pt"
    train_model(dataset=str(tiny_data[0]), output=str(model), config=config, method=method)
    evaluate_model(
        model=str(model),
        judge=str(judge_file),
        dataset=str(tiny_data[0]),
        output=str(tmp_path / "m.csv"),
        config={**config, "evaluate": {**config["evaluate"], "group_size": 2}},
        method=method,
    )
    table = pd.read_csv(tmp_path / "m.csv")
    assert {"Acc", "IS", "Acc/fixed_dynamics", "Acc/fixed_static/body"} <= set(table["metric"])
    assert table["value"].notna().all()
    figures = {"swap": str(tmp_path / "swap.png"), "generation": str(tmp_path / "gen.png")}
    plot_figures(model=str(model), dataset=str(tiny_data[0]), config=config, method=method, **figures)
    assert all(Path(f).stat().st_size > 0 for f in figures.values())


def test_latent_space_figures_are_the_unordered_models(tiny_data, tmp_path):
    config = family_config(epochs=1)
    train_model(dataset=str(tiny_data[0]), output=str(tmp_path / "u.pt"), config=config, method="unordered")
    outputs = {"grid": str(tmp_path / "grid.png"), "trace": str(tmp_path / "trace.png")}
    plot_latent_space(
        model=str(tmp_path / "u.pt"), dataset=str(tiny_data[0]), config=config, method="u", **outputs
    )
    assert all(Path(f).stat().st_size > 0 for f in outputs.values())
    train_model(dataset=str(tiny_data[0]), output=str(tmp_path / "d.pt"), config=config, method="dsvae")
    with pytest.raises(ValueError, match="family: unordered"):
        plot_latent_space(
            model=str(tmp_path / "d.pt"), dataset=str(tiny_data[0]), config=config, method="d", **outputs
        )
