"""The shared training loop on a tiny synthetic dataset: resume after a kill, NaN stops, the judge stage."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import call_with_config
from torch import nn

import models
from pipeline import config as config_module
from pipeline import files
from pipeline.data import h5io
from pipeline.data.clips import ClipSet, load_clips
from pipeline.train import checkpoint
from pipeline.train import loop as training
from pipeline.train.checkpoint import load_model, save_model
from pipeline.train.judge import judge_accuracy, train_judge
from pipeline.train.model import train_model

T, SIZE, GRID, TOPK, DIRECTION_GRID = 4, 16, 4, 2, 3
N_TRAIN, N_TEST = 24, 8
FACTORS = [
    h5io.Factor("body", "static", ("red", "green", "blue")),
    h5io.Factor("action", "dynamic", ("left", "right")),
]
PROTOCOL = h5io.Protocol(h5io.GENERATION_DIRECTIONS, score_head="action", title="tiny")


def synthetic_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """Clips whose background colour is the body class and whose white square moves left or right."""
    rng = np.random.default_rng(seed)
    body, action = rng.integers(0, 3, n), rng.integers(0, 2, n)
    frames = rng.integers(0, 40, (n, T, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, ..., body[i]] += 120
        for t in range(T):
            left = 2 + 3 * t if action[i] else SIZE - 6 - 3 * t
            frames[i, t, 6:10, left : left + 4] = 255
    return {"frames": frames, "sequence_id": np.arange(n), "body": body, "action": action}


def write_tiny_data(root: Path) -> tuple[Path, Path]:
    """A dataset file and its flow label file, (T=4, 16x16x3) clips, 24 train and 8 test."""
    splits = {"train": synthetic_split(N_TRAIN, 0), "test": synthetic_split(N_TEST, 1)}
    dataset, labels = root / "tiny.h5", root / "flow.h5"
    h5io.write_dataset(dataset, name="tiny", factors=FACTORS, splits=splits, protocol=PROTOCOL)
    rng = np.random.default_rng(2)
    flow = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        topk = np.stack([rng.permutation(GRID * GRID)[:TOPK] for _ in range(n * T)]).reshape(n, T, TOPK)
        directions = rng.integers(-1, 8, (n, T, DIRECTION_GRID**2)).astype(np.int8)  # -1: a still cell
        directions[:, 0] = -1  # no flow enters the first frame
        flow[split] = {"flow_topk": topk, "flow_direction": directions}
    attrs = {
        "dataset": "tiny",
        "labeler": "test",
        "grid": GRID,
        "topk": TOPK,
        "direction_grid": DIRECTION_GRID,
    }
    h5io.write_labels(labels, attrs=attrs, labels=flow)
    return dataset, labels


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("tiny"))


def tiny_config(**train) -> dict:
    return config_module.load(
        overrides={
            "preset": "smoke",
            "device": "cpu",
            "flow": {"grid": GRID, "topk": TOPK},
            # 16 px / 2**2: FrameEncoder needs the image side divisible by 2**len(conv_channels)
            "model": {
                "conv_channels": [4, 8],
                "frame_dim": 12,
                "hidden_dim": 10,
                "static_dim": 6,
                "dynamic_dim": 3,
            },
            "train": {"epochs": 3, "batch_size": 8, "bf16": False, **train},
            "judge": {
                "conv_channels": [4, 8],
                "frame_dim": 12,
                "hidden_dim": 8,
                "epochs": 2,
                "batch_size": 8,
                "bf16": False,
            },
        }
    )


def run_train(data: tuple[Path, Path], out: Path, config: dict, method: str = "full") -> None:
    dataset, labels = data
    call_with_config(
        train_model,
        config,
        dataset=str(dataset),
        labels=str(labels),
        output=str(out / "model.pt"),
        variant=config["variants"][method],
    )


def metric_rows(run: Path) -> list[tuple[int, str]]:
    table = pd.read_csv(run / "metrics.csv")
    return sorted(zip(table["epoch"], table["split"], strict=True))


def epoch_of(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=False)["epoch"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run_a")
    run_train(tiny_data, out, tiny_config())
    return out


def interrupt_in_epoch(monkeypatch: pytest.MonkeyPatch, stop_epoch: int, after_batches: int = 1) -> None:
    """Make `fit` die with KeyboardInterrupt inside epoch `stop_epoch` (0-based), after a few steps."""
    original = training.train_one_epoch

    def dying_epoch(model, loss_fn, data, optimizer, scheduler, s, epoch):
        if epoch != stop_epoch:
            return original(model, loss_fn, data, optimizer, scheduler, s, epoch)
        calls = 0

        def dying_loss(net, x, targets):
            nonlocal calls
            calls += 1
            if calls > after_batches:
                raise KeyboardInterrupt
            return loss_fn(net, x, targets)

        return original(model, dying_loss, data, optimizer, scheduler, s, epoch)

    monkeypatch.setattr(training, "train_one_epoch", dying_epoch)


def run_killed_in_epoch(data, out: Path, config: dict, monkeypatch, stop_epoch: int) -> None:
    """A run of `config` dying inside epoch `stop_epoch` (0-based): its checkpoint has that many epochs."""
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, stop_epoch)
        with pytest.raises(KeyboardInterrupt):
            run_train(data, out, config)


def assert_same_weights(a: Path, b: Path) -> None:
    state_a = torch.load(a, weights_only=False)["state_dict"]
    state_b = torch.load(b, weights_only=False)["state_dict"]
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), f"{name} differs"


def test_uninterrupted_run_writes_model_and_metrics(uninterrupted: Path):
    assert (uninterrupted / "model.pt").exists()
    assert epoch_of(uninterrupted / "run" / "checkpoint.pt") == 3
    assert metric_rows(uninterrupted / "run") == [(e, s) for e in (1, 2, 3) for s in ("test", "train")]
    columns = set(pd.read_csv(uninterrupted / "run" / "metrics.csv").columns)
    assert {"recon", "kl_static", "kl_dynamic", "scc", "dfp", "mi", "loss"} <= columns


def test_resume_after_kill_matches_uninterrupted_run(tiny_data, uninterrupted, tmp_path, monkeypatch, caplog):
    config = tiny_config()
    run_killed_in_epoch(tiny_data, tmp_path, config, monkeypatch, stop_epoch=2)
    run = tmp_path / "run"
    assert epoch_of(run / "checkpoint.pt") == 2
    assert not (tmp_path / "model.pt").exists()
    assert metric_rows(run) == [(e, s) for e in (1, 2) for s in ("test", "train")]

    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(tiny_data, tmp_path, config)
    assert any("resuming" in r.getMessage() and "after epoch 2" in r.getMessage() for r in caplog.records)
    assert metric_rows(run) == [(e, s) for e in (1, 2, 3) for s in ("test", "train")]
    assert epoch_of(run / "checkpoint.pt") == 3
    assert_same_weights(tmp_path / "model.pt", uninterrupted / "model.pt")


def test_kill_between_metrics_and_checkpoint_leaves_no_duplicate_rows(
    tiny_data, uninterrupted, tmp_path, monkeypatch
):
    """A kill while epoch 3's checkpoint is being written: metrics.csv already has epoch 3, the checkpoint
    says 2. The rerun repeats epoch 3 and must not log it twice."""
    config = tiny_config()
    original = checkpoint.save_checkpoint

    def dying_save(path, state, **details):
        if details["epochs_done"] == 3:
            raise KeyboardInterrupt
        original(path, state, **details)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save_checkpoint", dying_save)
        with pytest.raises(KeyboardInterrupt):
            run_train(tiny_data, tmp_path, config)
    assert epoch_of(tmp_path / "run" / "checkpoint.pt") == 2
    run_train(tiny_data, tmp_path, config)
    assert metric_rows(tmp_path / "run") == [(e, s) for e in (1, 2, 3) for s in ("test", "train")]
    assert_same_weights(tmp_path / "model.pt", uninterrupted / "model.pt")


def test_checkpoint_of_another_config_is_not_resumed(tiny_data, uninterrupted, tmp_path, caplog):
    shutil.copytree(uninterrupted / "run", tmp_path / "run")
    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(tiny_data, tmp_path, tiny_config(epochs=1, lr=0.003))
    messages = [r.getMessage() for r in caplog.records]
    assert any("config changed (train.epochs: 3 -> 1, train.lr: 0.002 -> 0.003)" in m for m in messages)
    assert not any(m.startswith("resuming") for m in messages)
    assert epoch_of(tmp_path / "run" / "checkpoint.pt") == 1
    assert metric_rows(tmp_path / "run") == [(1, "test"), (1, "train")]


def not_resumed_because(caplog) -> list[str]:
    """The reasons logged for checkpoints set aside."""
    return [m.split(": ", 1)[1] for m in caplog.messages if m.startswith("not resuming ")]


def test_a_finished_run_trains_again_from_epoch_one(tiny_data, uninterrupted, tmp_path, caplog):
    """A rerun of a finished run (`--forcerun train_model` after a code change) trains, never returns the
    old model unlooked-at; same inputs and seed, so the same model again."""
    shutil.copytree(uninterrupted / "run", tmp_path / "run")
    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(tiny_data, tmp_path, tiny_config())
    assert not_resumed_because(caplog) == ["finished run: training again; training from epoch 1"]
    assert [m for m in caplog.messages if m.startswith("epoch ")][0].startswith("epoch 1/3")
    assert metric_rows(tmp_path / "run") == [(e, s) for e in (1, 2, 3) for s in ("test", "train")]
    assert_same_weights(tmp_path / "model.pt", uninterrupted / "model.pt")


def test_changed_data_is_never_resumed(tiny_data, tmp_path, caplog):
    """The dataset rebuilt with other clips at the same path (the issue's `dsprites={train_sequences: 40}`):
    the run's checkpoint is set aside for that reason first, and the model is the one a fresh run on the
    new clips trains."""
    (tmp_path / "data").mkdir()
    data = (Path(shutil.copy(tiny_data[0], tmp_path / "data")), tiny_data[1])
    config = tiny_config()
    run_train(data, tmp_path / "old", config)
    (tmp_path / "old" / "model.pt").unlink()  # as Snakemake deletes the output of a job it reruns
    splits = {"train": synthetic_split(N_TRAIN, 10), "test": synthetic_split(N_TEST, 11)}
    h5io.write_dataset(data[0], name="tiny", factors=FACTORS, splits=splits, protocol=PROTOCOL)
    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(data, tmp_path / "old", config)
    assert not_resumed_because(caplog) == ["inputs changed (dataset); training from epoch 1"]
    run_train(data, tmp_path / "fresh", config)
    assert_same_weights(tmp_path / "old" / "model.pt", tmp_path / "fresh" / "model.pt")
    recorded = json.loads((tmp_path / "fresh" / "run" / "config.json").read_text())["inputs"]
    assert recorded == {"dataset": files.file_sha256(data[0]), "labels": files.file_sha256(data[1])}


def test_an_interrupted_run_of_other_code_trains_afresh(
    tiny_data, uninterrupted, tmp_path, monkeypatch, caplog
):
    config = tiny_config()
    run_killed_in_epoch(tiny_data, tmp_path, config, monkeypatch, stop_epoch=2)
    monkeypatch.setattr(checkpoint, "code_sha256", lambda: "the code after an edit")
    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(tiny_data, tmp_path, config)
    assert not_resumed_because(caplog) == [
        "code changed (the pipeline or models packages); training from epoch 1"
    ]
    assert_same_weights(tmp_path / "model.pt", uninterrupted / "model.pt")


def test_an_unreadable_checkpoint_trains_afresh(tiny_data, uninterrupted, tmp_path, monkeypatch, caplog):
    config = tiny_config()
    run_killed_in_epoch(tiny_data, tmp_path, config, monkeypatch, stop_epoch=2)
    saved = tmp_path / "run" / "checkpoint.pt"
    os.truncate(saved, saved.stat().st_size // 2)
    caplog.set_level(logging.INFO, logger="pipeline.train")
    run_train(tiny_data, tmp_path, config)
    (reason,) = not_resumed_because(caplog)
    assert reason.startswith("it cannot be read (RuntimeError: ") and reason.endswith("training from epoch 1")
    assert metric_rows(tmp_path / "run") == [(e, s) for e in (1, 2, 3) for s in ("test", "train")]
    assert_same_weights(tmp_path / "model.pt", uninterrupted / "model.pt")


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path):
    frames = torch.randint(0, 256, (16, T, SIZE, SIZE, 3), dtype=torch.uint8)
    data = ClipSet(frames, {}, ())
    steps = 0

    def loss_fn(net: nn.Module, x: torch.Tensor, targets: dict) -> dict[str, torch.Tensor]:
        nonlocal steps
        loss = net(x.mean(dim=(1, 3, 4))).pow(2).mean()
        if net.training:
            steps += 1
            if steps > 2:  # two batches per epoch: the second epoch goes bad
                loss = loss * float("nan")
        return {"loss": loss}

    settings = training.TrainSettings(epochs=3, batch_size=8, lr=1e-2)
    with pytest.raises(FloatingPointError) as err:
        training.fit(
            model=nn.Linear(3, 1),
            loss_fn=loss_fn,
            train_set=data,
            test_set=data,
            settings=settings,
            run_dir=tmp_path,
            run_config={"test": "nan"},
        )
    message = str(err.value)
    assert str(tmp_path / "checkpoint.pt") in message
    assert "epoch 1" in message
    assert epoch_of(tmp_path / "checkpoint.pt") == 1


def test_training_split_smaller_than_a_batch_is_a_clear_error(tmp_path):
    data = ClipSet(torch.zeros(5, T, SIZE, SIZE, 3, dtype=torch.uint8), {}, ())
    settings = training.TrainSettings(epochs=1, batch_size=8, lr=1e-2)
    with pytest.raises(ValueError, match="5 clips, fewer than one batch of 8: lower the batch_size"):
        training.fit(
            model=nn.Linear(3, 1),
            loss_fn=lambda net, x, targets: {"loss": net(x.mean(dim=(1, 3, 4))).mean()},
            train_set=data,
            test_set=data,
            settings=settings,
            run_dir=tmp_path,
            run_config={},
        )
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def judge_files(tiny_data, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("judge")
    judge, accuracy = out / "judge.pt", out / "accuracy.csv"
    call_with_config(
        train_judge, tiny_config(), dataset=str(tiny_data[0]), output=str(judge), accuracy=str(accuracy)
    )
    return judge, accuracy


def test_train_judge_writes_one_accuracy_row_per_head(judge_files):
    judge, accuracy = judge_files
    assert judge.exists()
    table = pd.read_csv(accuracy)
    assert list(table.columns) == ["dataset", "head", "accuracy", "n"]
    assert sorted(table["head"]) == ["action", "body"]
    assert table["accuracy"].between(0, 1).all()
    assert (table["n"] == N_TEST).all() and (table["dataset"] == "tiny").all()


def test_a_finished_judge_trains_again(tiny_data, judge_files, tmp_path, caplog):
    judge, accuracy = judge_files
    shutil.copytree(judge.parent / "run", tmp_path / "run")
    caplog.set_level(logging.INFO, logger="pipeline.train")
    arguments = {"dataset": str(tiny_data[0]), "output": str(tmp_path / "judge.pt")}
    call_with_config(train_judge, tiny_config(), accuracy=str(tmp_path / "accuracy.csv"), **arguments)
    assert not_resumed_because(caplog) == ["finished run: training again; training from epoch 1"]
    assert_same_weights(tmp_path / "judge.pt", judge)
    assert (tmp_path / "accuracy.csv").read_text() == accuracy.read_text()


def test_loaded_judge_reproduces_its_accuracy(tiny_data, judge_files):
    judge, accuracy = judge_files
    net = load_model(judge)
    assert isinstance(net, models.Judge) and not net.training
    test_set = load_clips(tiny_data[0], "test")
    scores = judge_accuracy(net, test_set, batch_size=8, device="cpu", bf16=False)
    table = pd.read_csv(accuracy).set_index("head")["accuracy"]
    assert scores == pytest.approx(table.to_dict(), abs=1e-12)


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    config = models.S3VAEConfig(
        image_size=SIZE, conv_channels=(4, 8), frame_dim=12, hidden_dim=10, static_dim=6, dynamic_dim=3
    )
    model = models.S3VAE(config)
    x = torch.rand(3, T, 3, SIZE, SIZE)
    model.train()
    model(x)  # moves the BatchNorm running statistics away from their initial values
    model.eval()
    save_model(tmp_path / "model.pt", "s3vae", model)
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config == model.config
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
            assert torch.equal(a.mean, b.mean) and torch.equal(a.logvar, b.logvar)
        z_f, z = torch.randn(3, 6), torch.randn(3, T, 3)
        assert torch.equal(model.decode(z_f, z), loaded.decode(z_f, z))


def test_load_model_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="snakemake"):
        load_model(tmp_path / "absent.pt")
