"""The judges (`models/judge.py`): what their reads ignore, what their training losses score, and SMMNIST's
locating judge trained by its stage."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from conftest import call_with_config
from test_smmnist import write_fake_mnist

from models import Judge, JudgeConfig, LocatingJudge, LocatingJudgeConfig
from pipeline.config import load
from pipeline.data.clips import ClipSet
from pipeline.data.factors import Factor, judge_heads
from pipeline.data.smmnist import build_smmnist
from pipeline.evaluate import heads
from pipeline.evaluate.heads import TEMPERATURES
from pipeline.train.checkpoint import load_model, save_model
from pipeline.train.families import ModelInputs, family
from pipeline.train.judge import (
    calibrate,
    crop_around_objects,
    judge_loss_fn,
    locating_loss_fn,
    place_targets,
    train_judge,
    whole_frame_norm_statistics,
)

SIZE, T = 64, 4


def _judge(size: int = SIZE) -> Judge:
    torch.manual_seed(0)
    config = JudgeConfig(3, size, conv_channels=(4, 8, 8, 8), frame_dim=8, hidden_dim=6, heads={"shape": 3})
    return Judge(config).eval()


def _still_clip(top: int, left: int, size: int = SIZE) -> torch.Tensor:
    """(1, T, 3, S, S): a 10 x 12 patch, the same on every frame, with its corner at (top, left)."""
    patch = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(1))
    clip = torch.zeros(1, T, 3, size, size)
    clip[..., top : top + 10, left : left + 12] = patch
    return clip


@torch.no_grad()
def test_the_pooled_read_does_not_care_where_the_object_is():
    judge = _judge(size=128)
    # A shift by the trunk's whole stride (2**4 = 16 px) moves the feature map by whole cells; away from
    # the borders (the trunk sees 46 px) its max and mean over the image stay the same.
    placed_here, pooled_here = judge.read_frames(_still_clip(48, 48, size=128))
    placed_there, pooled_there = judge.read_frames(_still_clip(64, 48, size=128))
    torch.testing.assert_close(pooled_here, pooled_there, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(placed_here, placed_there, rtol=1e-3, atol=1e-4)


def test_training_scores_the_clip_and_every_frame_alone():
    judge = _judge().train()
    heads = judge_heads([Factor("shape", "static", ("square", "ellipse", "heart"))])
    x = torch.rand(2, T, 3, SIZE, SIZE)
    terms = judge_loss_fn(heads)(judge, x, {"shape": torch.tensor([0, 2])})
    assert set(terms) == {"ce_shape", "ce_frame_shape", "loss"}
    torch.testing.assert_close(terms["loss"], terms["ce_shape"] + terms["ce_frame_shape"])
    logits, frame_logits = judge(x, per_frame=True)
    assert frame_logits["shape"].shape == (2, T, 3)
    expected = torch.nn.functional.cross_entropy(
        frame_logits["shape"].flatten(0, 1), torch.tensor([0] * T + [2] * T)
    )
    torch.testing.assert_close(terms["ce_frame_shape"], expected)


@torch.no_grad()
def test_a_heads_temperature_divides_its_clip_logits_only():
    judge = _judge()
    x = torch.rand(2, T, 3, SIZE, SIZE)
    logits, frame_logits = judge(x, per_frame=True)
    judge.config = dataclasses.replace(judge.config, temperature={"shape": 2.0})
    cooled, frame_logits_after = judge(x, per_frame=True)
    torch.testing.assert_close(cooled["shape"], logits["shape"] / 2)
    torch.testing.assert_close(frame_logits_after["shape"], frame_logits["shape"])


def test_calibration_fits_the_digit_pair_head_and_the_judge_file_keeps_it(tmp_path):
    factors = tuple(Factor(f"digit_{m}", "static", tuple("0123456789"), group="digits") for m in "ab")
    torch.manual_seed(0)
    config = JudgeConfig(1, 32, conv_channels=(4, 8, 8), frame_dim=8, hidden_dim=6, heads={"digits": 10})
    judge = Judge(config)
    labels = torch.randint(0, 10, (2, 12))
    data = ClipSet(
        torch.randint(0, 256, (12, T, 32, 32, 1), dtype=torch.uint8),
        {"digit_a": labels[0], "digit_b": labels[1]},
        factors,
    )
    calibrate(judge, data, batch_size=5, device="cpu", bf16=False)
    assert set(judge.config.temperature) == {"digits"}
    assert judge.config.temperature["digits"] in TEMPERATURES
    save_model(tmp_path / "judge.pt", "judge", judge)
    loaded = load_model(tmp_path / "judge.pt")
    assert loaded.config.temperature == judge.config.temperature
    x = torch.rand(2, T, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["digits"], judge.eval()(x)["digits"])


# --- the locating judge (SMMNIST) ---------------------------------------------------------------------------
DIGITS = tuple(Factor(f"digit_{m}", "static", tuple("0123456789"), group="digits") for m in "ab")


def _locating_judge(size: int = 64) -> LocatingJudge:
    torch.manual_seed(0)
    config = LocatingJudgeConfig(1, size, conv_channels=(4, 8, 8), refine_layers=2, heads={"digits": 10})
    return LocatingJudge(config).eval()


def test_place_targets_share_each_objects_class_among_the_cells_around_its_centre():
    # cells of 8 px: an object centred on cell (2, 3)'s centre, one on the corner of cells (5..6, 5..6)
    centres = torch.tensor([[[20.0, 28.0], [48.0, 48.0]]])
    target = place_targets(centres, torch.tensor([[4, 7]]), cell=8, grid=8, n_classes=10)
    assert target.shape == (1, 11, 8, 8)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(1, 8, 8))
    assert target[0, 4, 2, 3] == 1 and target[0, 10, 2, 3] == 0
    torch.testing.assert_close(target[0, 7, 5:7, 5:7], torch.full((2, 2), 0.25))
    torch.testing.assert_close(target[0, 10, 5:7, 5:7], torch.full((2, 2), 0.75))
    assert target[0, :10].sum() == 2  # one object's worth of mass each, wherever it lies
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    mass = target[0, 7]
    centre = torch.stack([(mass * rows).sum(), (mass * cols).sum()]) / mass.sum()
    torch.testing.assert_close((centre + 0.5) * 8, centres[0, 1])  # the mass is centred where the object is


class _FixedPlaces(torch.nn.Module):
    """Cell logits (N, 11, 8, 8) of every frame: background everywhere but the given cells' classes."""

    def __init__(self, cells: dict[tuple[int, int], int]):
        super().__init__()
        self.cells = cells

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(frames), 11, 8, 8)
        logits[:, 10] = 20.0
        for (r, c), k in self.cells.items():
            logits[:, :, r, c] = 0.0
            logits[:, k, r, c] = 20.0
        return logits


@torch.no_grad()
def test_the_locating_judge_reads_the_share_of_the_clips_mass_each_digit_holds():
    judge = _locating_judge()
    (head,) = judge_heads(DIGITS)
    x = torch.rand(1, T, 1, 64, 64)
    judge.places = _FixedPlaces({(2, 2): 3, (5, 6): 7})
    logits = judge(x)["digits"]
    torch.testing.assert_close(logits.exp()[0, [3, 7]], torch.tensor([0.5, 0.5]), atol=1e-4, rtol=0)
    assert heads.predict(head, heads.probabilities({"digits": logits})["digits"]).tolist() == [[3, 7]]
    judge.places = _FixedPlaces({(2, 2): 3, (5, 6): 3})
    assert heads.predict(head, heads.probabilities(judge(x))["digits"]).tolist() == [
        [3, 3]
    ]  # one digit twice
    judge.places = _FixedPlaces({(2, 2): 3, (5, 6): 7})
    judge.config = dataclasses.replace(judge.config, temperature={"digits": 2.0})
    torch.testing.assert_close(judge(x)["digits"], logits / 2)


@torch.no_grad()
def test_the_locating_judges_clip_read_does_not_care_where_the_objects_are():
    # A shift by the trunk's stride (8 px) moves the cells' map by one cell; away from the borders (a cell
    # sees 54 px) the summed class mass stays the same.
    judge = _locating_judge(size=160)
    patch = torch.rand(1, 10, 12, generator=torch.Generator().manual_seed(1))
    here, there = torch.zeros(2, 1, T, 1, 160, 160)
    here[..., 64:74, 64:76] = patch
    there[..., 72:82, 64:76] = patch
    torch.testing.assert_close(judge(here)["digits"], judge(there)["digits"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(judge(here, places=True), judge(there, places=True), atol=1e-4)


def _two_clips_of_two_digits():
    """A training locating judge, its head, two random clips (2, T, 1, 64, 64) and their digits' targets."""
    targets = {
        "digit_a": torch.tensor([1, 5]),
        "digit_b": torch.tensor([2, 5]),
        "position": torch.randint(0, 33, (2, T, 2, 2)).float(),
    }
    return _locating_judge().train(), judge_heads(DIGITS)[0], torch.rand(2, T, 1, 64, 64), targets


def test_the_locating_loss_scores_one_frame_of_each_clip_against_the_digits_places():
    judge, head, x, targets = _two_clips_of_two_digits()
    torch.manual_seed(3)
    terms = locating_loss_fn([head])(judge, x, targets)
    assert set(terms) == {"ce_places_digits", "loss"} and terms["loss"].requires_grad
    torch.manual_seed(3)
    frame = torch.randint(T, (2,))
    rows = torch.arange(2)
    logits = judge(x[rows, frame, None], places=True)[:, 0]
    target = place_targets(
        targets["position"][rows, frame] + 16, torch.tensor([[1, 2], [5, 5]]), cell=8, grid=8, n_classes=10
    )
    expected = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(terms["loss"], expected)


def _frames_with_objects(corners: torch.Tensor, size: int = 64, side: int = 32) -> torch.Tensor:
    """(B, 1, size, size): a random patch of `side` px at each top-left corner of `corners` (B, M, 2)."""
    frames = torch.zeros(len(corners), 1, size, size)
    generator = torch.Generator().manual_seed(2)
    for b, objects in enumerate(corners.long().tolist()):
        for r, c in objects:
            frames[b, 0, r : r + side, c : c + side] += torch.rand(side, side, generator=generator) + 0.1
    return frames


def test_a_training_crop_holds_every_object_where_they_fit_and_one_whole_object_where_not():
    corners = torch.tensor(
        [[[0.0, 0.0], [16.0, 10.0]], [[5.0, 30.0], [12.0, 20.0]], [[0.0, 0.0], [32.0, 32.0]]]
    )
    frames = _frames_with_objects(corners)
    for seed in range(5):
        torch.manual_seed(seed)
        window, moved = crop_around_objects(frames, corners, 32, 48)
        assert window.shape == (3, 1, 48, 48)
        for b in (0, 1):  # both objects fit in 48 px: the window loses nothing, and the corners follow it
            torch.testing.assert_close(window[b].sum(), frames[b].sum())
            for (r, c), (r2, c2) in zip(corners[b].long().tolist(), moved[b].long().tolist(), strict=True):
                moved_object = window[b, :, r2 : r2 + 32, c2 : c2 + 32]
                torch.testing.assert_close(moved_object, frames[b, :, r : r + 32, c : c + 32])
        inside = [(0 <= moved[2, k]).all() and (moved[2, k] + 32 <= 48).all() for k in range(2)]
        assert sum(inside) == 1  # 64 px apart: one object, whole


def test_the_locating_loss_on_a_crop_the_size_of_the_frame_is_the_loss_on_the_frame():
    judge, head, x, targets = _two_clips_of_two_digits()
    losses = []
    for crop in (0, 64):
        torch.manual_seed(3)
        losses.append(locating_loss_fn([head], crop)(judge, x, targets)["loss"])
    torch.testing.assert_close(losses[0], losses[1])
    torch.manual_seed(3)
    assert locating_loss_fn([head], 48)(judge, x, targets)["loss"] != losses[0]
    with pytest.raises(ValueError, match="train_crop 44"):
        locating_loss_fn([head], 44)(judge, x, targets)  # not a whole number of 8-px cells


def test_norm_statistics_re_estimated_on_whole_frames():
    judge = _locating_judge().train()
    clips = (torch.rand(32, 1, 64, 64, 1) * 255).to(torch.uint8).expand(32, T, 64, 64, 1)  # still clips
    data = ClipSet(clips.contiguous(), {"digit_a": torch.zeros(32), "digit_b": torch.zeros(32)}, DIGITS)
    trunk = judge.places[0]
    norm = trunk[1][1]  # the first BatchNorm: after the first two strided convs
    norm.running_mean.fill_(5.0)
    seen = []
    hook = norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    whole_frame_norm_statistics(judge, data, batch_size=16, device="cpu")
    hook.remove()
    assert judge.training and [len(x) for x in seen] == [16, 16]  # every clip once, and its mode kept
    frames = clips[:, 0].permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = trunk[1][0](trunk[0](frames)).mean(dim=(0, 2, 3))
    torch.testing.assert_close(norm.running_mean, expected, rtol=1e-4, atol=1e-5)


def test_smmnists_judge_is_the_locating_judge_trained_by_its_stage(tmp_path):
    mnist = write_fake_mnist(tmp_path / "mnist")
    dataset = tmp_path / "smmnist.h5"
    config = load(overrides={"preset": "smoke"})
    sizes = {"train_sequences": 8, "test_sequences": 6, "judge_train_sequences": 20, "seed": 0}
    call_with_config(build_smmnist, config, mnist_dir=mnist, output=dataset, **sizes)
    output, accuracy = tmp_path / "judge.pt", tmp_path / "accuracy.csv"
    call_with_config(train_judge, config, dataset=str(dataset), output=str(output), accuracy=str(accuracy))
    judge = load_model(output)
    assert isinstance(judge, LocatingJudge) and judge.config.object_size == 32
    assert judge.config.conv_channels == tuple(config["judge"]["datasets"]["smmnist"]["conv_channels"])
    assert judge.config.temperature["digits"] in TEMPERATURES
    table = pd.read_csv(accuracy)
    assert table["head"].tolist() == ["digits"] and table["n"].tolist() == [6]


def test_the_locating_judge_refuses_a_dataset_without_object_places():
    shape = Factor("shape", "static", ("square", "ellipse", "heart"))
    data = ClipSet(torch.zeros(2, T, 64, 64, 1, dtype=torch.uint8), {"shape": torch.zeros(2)}, (shape,))
    attrs = {"name": "dsprites", "frame_shape": [T, 64, 64, 1], "modality": "video"}
    inputs = ModelInputs({"conv_channels": [4, 8, 8], "refine_layers": 1}, {}, data, attrs)
    with pytest.raises(ValueError, match="give it family 'judge'"):
        family("locating_judge").build(inputs)
