"""The judge (`models/judge.py`): what its pooled read ignores, and what its training loss scores."""

from __future__ import annotations

import torch

from models import Judge, JudgeConfig
from pipeline.data.factors import Factor, judge_heads
from pipeline.train.judge import judge_loss_fn

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
