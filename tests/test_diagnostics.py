"""The diagnostics stage: probes with known answers, the multiset class of a group head, and the whole
stage on tiny files (ceiling, swap, probe and loss rows, the heat map)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import call_with_config

from models import S3VAE, Judge, JudgeConfig, S3VAEConfig
from models.unordered import Unordered, UnorderedConfig
from pipeline.config import load
from pipeline.data.dsprites import build_dsprites
from pipeline.data.factors import Factor, judge_heads
from pipeline.evaluate.diagnostics import diagnose_model, head_classes, probe_matrix
from pipeline.train.checkpoint import save_model

SIZE, T = 32, 4


def test_a_probe_finds_a_factor_where_it_lives_and_not_elsewhere():
    rng = np.random.default_rng(0)
    heads = judge_heads([Factor("colour", "static", ("a", "b", "c"))])
    labels = {"colour": rng.integers(0, 3, 600)}
    centres = rng.normal(size=(3, 5)) * 4
    means = {
        "z_f": centres[labels["colour"]] + rng.normal(size=(600, 5)),  # carries the colour
        "z_1:T": rng.normal(size=(600, 8)),  # carries nothing
    }
    split = slice(0, 400), slice(400, 600)
    probes = probe_matrix(
        {k: v[split[0]] for k, v in means.items()},
        {k: v[split[0]] for k, v in labels.items()},
        {k: v[split[1]] for k, v in means.items()},
        {k: v[split[1]] for k, v in labels.items()},
        heads,
    )
    assert probes["colour", "z_f"] > 0.95
    assert probes["colour", "z_1:T"] < 0.5  # chance is 1/3


def test_a_group_head_is_probed_as_one_class_per_multiset():
    heads = judge_heads(
        [
            Factor("digit_a", "static", tuple("0123"), "digits"),
            Factor("digit_b", "static", tuple("0123"), "digits"),
        ]
    )
    labels = {"digit_a": np.array([1, 2, 3, 3]), "digit_b": np.array([2, 1, 3, 0])}
    classes = head_classes(heads[0], labels)
    assert classes[0] == classes[1]  # {1, 2} in either order
    assert len(set(classes.tolist())) == 3


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diagnostics")
    dataset = root / "dsprites.h5"
    build_dsprites(
        output=dataset,
        train_sequences=24,
        test_sequences=12,
        judge_train_sequences=0,
        frames=T,
        image_size=SIZE,
        seed=0,
    )
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(image_size=SIZE, conv_channels=(4, 8), frame_dim=8, hidden_dim=8, static_dim=3))
    model_path = root / "model" / "model.pt"
    (model_path.parent / "run").mkdir(parents=True)
    save_model(model_path, "s3vae", model)
    pd.DataFrame(
        [
            {"epoch": 1, "split": "train", "seconds": 1.0, "recon": 5.0, "kl_static": 1.0, "loss": 6.0},
            {"epoch": 1, "split": "test", "seconds": 1.0, "recon": 5.5, "kl_static": 1.0, "loss": 6.5},
        ]
    ).to_csv(model_path.parent / "run" / "metrics.csv", index=False)
    heads = {"motion": 8, "rotation": 3, "shape": 3, "color": 6, "scale": 3}
    judge = Judge(JudgeConfig(image_size=SIZE, conv_channels=(4, 8), frame_dim=8, hidden_dim=4, heads=heads))
    save_model(root / "judge.pt", "judge", judge)
    return {"dataset": dataset, "model": model_path, "judge": root / "judge.pt", "root": root}


def test_diagnose_model_writes_every_diagnostic_and_the_heat_map(tiny_files):
    config = load(overrides={"preset": "smoke", "device": "cpu", "evaluate": {"probe_sequences": 24}})
    out = tiny_files["root"] / "out"
    out.mkdir()
    call_with_config(
        diagnose_model,
        config,
        model=str(tiny_files["model"]),
        judge=str(tiny_files["judge"]),
        dataset=str(tiny_files["dataset"]),
        output_csv=str(out / "seed0_diagnostics.csv"),
        output_png=str(out / "seed0_probes.png"),
        method="full",
        training_seed=0,
    )
    table = pd.read_csv(out / "seed0_diagnostics.csv")
    assert set(table["diagnostic"]) == {"ceiling", "swap", "probe", "loss"}
    factors = {"motion", "rotation", "shape", "color", "scale"}
    for diagnostic in ("ceiling", "swap"):
        assert set(table.loc[table["diagnostic"] == diagnostic, "factor"]) == factors
    probes = table[table["diagnostic"] == "probe"]
    assert len(probes) == 2 * len(factors) and set(probes["latent"]) == {"z_f", "z_1:T"}
    assert table.loc[table["diagnostic"] != "loss", "value"].between(0, 1).all()
    loss = table[table["diagnostic"] == "loss"].set_index("factor")["value"]
    assert loss.to_dict() == {"recon": 5.0, "kl_static": 1.0, "loss": 6.0}  # the last training epoch's
    assert (out / "seed0_probes.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0_diagnostics.csv", "seed0_probes.png"]


def test_diagnostics_of_a_model_that_encodes_at_random_follow_the_seed(tiny_files):
    """The unordered model's q(f | x) draws its frames at random: the diagnostics seed before encoding, so
    whatever the process drew before, they come out the same."""
    root = tiny_files["root"] / "random_encoder"
    model_path = root / "model.pt"
    (root / "run").mkdir(parents=True)
    shutil.copy(tiny_files["model"].parent / "run" / "metrics.csv", root / "run" / "metrics.csv")
    torch.manual_seed(0)
    config = UnorderedConfig(
        image_size=SIZE, conv_channels=(4, 8), pair_channels=4, frame_dim=8, hidden_dim=8, static_dim=3
    )
    save_model(model_path, "unordered", Unordered(config))
    settings = load(overrides={"preset": "smoke", "device": "cpu", "evaluate": {"probe_sequences": 24}})
    tables = []
    for draws in (1, 1000):
        torch.rand(draws)  # another state of the global generator
        output = root / f"after_{draws}.csv"
        call_with_config(
            diagnose_model,
            settings,
            model=str(model_path),
            judge=str(tiny_files["judge"]),
            dataset=str(tiny_files["dataset"]),
            output_csv=str(output),
            output_png=str(root / "probes.png"),
            method="unordered",
        )
        tables.append(output.read_text())
    assert tables[0] == tables[1]
