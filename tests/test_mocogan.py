"""MoCoGAN on a tiny config: shapes, both GAN losses and steps, Table 1 probabilities from a tiny judge."""

from __future__ import annotations

import numpy as np
import torch

from models import Judge, JudgeConfig, MoCoGAN, MoCoGANConfig
from pipeline.data.factors import Factor, judge_heads
from pipeline.data.h5io import GENERATION_DIRECTIONS, Protocol
from pipeline.evaluate.heads import predict
from pipeline.evaluate.sampled import table1_probabilities
from pipeline.evaluate.table1 import score_run
from pipeline.train.checkpoint import load_model, save_model

B, T, C, SIZE = 4, 5, 3, 16
TINY = dict(
    in_channels=C,
    image_size=SIZE,
    generator_channels=(4, 8),
    discriminator_channels=(4, 8),
    content_dim=6,
    motion_dim=3,
    noise_dim=2,
)
FACTORS = (Factor("action", "dynamic", ("a", "b", "c")), Factor("skin", "static", ("x", "y")))


def tiny_model(seed: int = 0) -> MoCoGAN:
    torch.manual_seed(seed)
    return MoCoGAN(MoCoGANConfig(**TINY))


def real_clips(seed: int = 1) -> torch.Tensor:
    return torch.rand(B, T, C, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_generator_and_discriminator_shapes():
    model = tiny_model()
    clips = model.generate(B, T)
    assert clips.shape == (B, T, C, SIZE, SIZE) and 0 <= clips.min() and clips.max() <= 1
    assert model.video_discriminator(clips).shape == (B, T)
    assert model.image_discriminator(clips[:, 0]).shape == (B,)
    generator, discriminator = model.generator_parameters(), model.discriminator_parameters()
    assert len(generator) + len(discriminator) == len(list(model.parameters()))


def test_content_is_fixed_over_time_and_the_noise_sets_the_motion():
    model = tiny_model().eval()
    content, noise = torch.randn(2, TINY["content_dim"]), torch.randn(2, T, TINY["noise_dim"])
    torch.testing.assert_close(model.generate(2, T, content, noise), model.generate(2, T, content, noise))
    other_content = model.generate(2, T, torch.randn(2, TINY["content_dim"]), noise)
    assert not torch.allclose(other_content, model.generate(2, T, content, noise))


def test_gan_losses_are_finite_and_each_player_improves_on_a_fixed_batch():
    model = tiny_model()
    real = real_clips()
    d_opt = torch.optim.Adam(model.discriminator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(model.generator_parameters(), lr=2e-3, betas=(0.5, 0.999))

    def losses() -> tuple[dict, dict]:
        torch.manual_seed(5)  # the same codes and the same frames for D_I before and after the steps
        fake = model.generate(B, T)
        return model.discriminator_loss(real, fake), model.generator_loss(fake)

    with torch.no_grad():
        d_before, g_before = losses()
    assert set(d_before) == {"d_image", "d_video", "loss"} and set(g_before) == {"g_image", "g_video", "loss"}
    assert all(torch.isfinite(v) for v in [*d_before.values(), *g_before.values()])
    for _ in range(3):
        d_opt.zero_grad()
        losses()[0]["loss"].backward()
        d_opt.step()
    with torch.no_grad():
        d_after, g_mid = losses()
    assert d_after["loss"] < d_before["loss"]
    for _ in range(3):
        g_opt.zero_grad()
        losses()[1]["loss"].backward()
        g_opt.step()
    with torch.no_grad():
        assert losses()[1]["loss"] < g_mid["loss"]


def test_discriminator_loss_gives_the_generator_no_gradient():
    model = tiny_model()
    model.discriminator_loss(real_clips(), model.generate(B, T))["loss"].backward()
    assert all(p.grad is None for p in model.generator_parameters())


def test_table1_probabilities_feed_score_run():
    model = tiny_model().eval()
    torch.manual_seed(2)
    heads = {"action": 3, "skin": 2}
    judge = Judge(JudgeConfig(C, SIZE, conv_channels=(4, 8), frame_dim=8, hidden_dim=6, heads=heads)).eval()
    groups, size = 4, 3
    probs, labels = table1_probabilities(
        model,
        judge,
        judge_heads(FACTORS),
        directions=GENERATION_DIRECTIONS,
        groups=groups,
        group_size=size,
        steps=T,
        batch_size=5,
    )
    for direction in ("fixed_dynamics", "fixed_static"):
        assert probs[direction]["action"].shape == (groups * size, 3)
        assert probs[direction]["skin"].shape == (groups * size, 2)
    for name, direction in (("action", "fixed_dynamics"), ("skin", "fixed_static")):
        votes = probs[direction][name].argmax(1).reshape(groups, size)
        per_group = labels[name].reshape(groups, size)
        assert (per_group == per_group[:, :1]).all(), "one label per group"
        for row, label in zip(votes, per_group[:, 0], strict=True):
            assert (row == label).sum() == np.bincount(row).max(), "the label is the group's majority vote"
    scores = score_run(probs, labels, judge_heads(FACTORS), Protocol(GENERATION_DIRECTIONS, "action", "tiny"))
    assert 1 / size <= scores["Acc/fixed_dynamics"] <= 1 and 1 / size <= scores["Acc/fixed_static"] <= 1
    assert scores["IS"] >= 1


def test_table1_probabilities_vote_with_whole_multisets_of_an_order_free_group():
    """SMMNIST: one `digits` head for two grouped factors, scored in the fixed_static direction only."""
    model = tiny_model().eval()
    torch.manual_seed(3)
    digits = tuple("0123")
    factors = (Factor("digit_a", "static", digits, "digits"), Factor("digit_b", "static", digits, "digits"))
    heads = judge_heads(factors)
    judge = Judge(JudgeConfig(C, SIZE, conv_channels=(4, 8), frame_dim=8, hidden_dim=6, heads={"digits": 4}))
    groups, size = 5, 3
    probs, labels = table1_probabilities(
        model,
        judge.eval(),
        heads,
        directions=("fixed_static",),
        groups=groups,
        group_size=size,
        steps=T,
        batch_size=4,
    )
    assert list(probs) == ["fixed_static"] and probs["fixed_static"]["digits"].shape == (groups * size, 4)
    pairs = np.stack([labels["digit_a"], labels["digit_b"]], axis=1).reshape(groups, size, 2)
    votes = predict(heads[0], probs["fixed_static"]["digits"]).reshape(groups, size, 2)
    for group_votes, group_labels in zip(votes, pairs, strict=True):
        assert (group_labels == group_labels[0]).all(), "one multiset per group"
        agree = (group_votes == group_labels[0]).all(axis=1).sum()
        counts = [(group_votes == v).all(axis=1).sum() for v in group_votes]
        assert agree == max(counts), "the labels are the group's most frequent multiset"
    scores = score_run(probs, labels, heads, Protocol(("fixed_static",), "digits", "tiny digits"))
    assert 1 / size <= scores["Acc"] <= 1 and scores["H(y)"] <= np.log(4) + 1e-6


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model().eval()
    save_model(tmp_path / "model.pt", "mocogan", model)
    loaded = load_model(tmp_path / "model.pt")
    content, noise = torch.randn(2, TINY["content_dim"]), torch.randn(2, T, TINY["noise_dim"])
    torch.testing.assert_close(loaded.generate(2, T, content, noise), model.generate(2, T, content, noise))
