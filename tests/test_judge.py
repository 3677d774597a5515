"""The judge (`models/judge.py`): what its pooled read ignores, and what its training loss scores."""

from __future__ import annotations

import dataclasses

import torch

from models import Judge, JudgeConfig
from pipeline.data.clips import ClipSet
from pipeline.data.factors import Factor, judge_heads
from pipeline.evaluate.heads import TEMPERATURES
from pipeline.train.checkpoint import load_model, save_model
from pipeline.train.judge import calibrate, judge_loss_fn

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
