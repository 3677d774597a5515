"""The unordered-frames model (Helminger et al.) on a tiny config."""

from __future__ import annotations

import pytest
import torch

from models import Unordered, UnorderedConfig
from pipeline.train.checkpoint import load_model, save_model

B, T, C, SIZE = 4, 5, 1, 16
TINY = dict(
    in_channels=C,
    image_size=SIZE,
    conv_channels=(4, 8),
    pair_channels=6,
    frame_dim=12,
    hidden_dim=10,
    static_dim=5,
    dynamic_dim=2,
)


def tiny_model(seed: int = 0) -> Unordered:
    torch.manual_seed(seed)
    return Unordered(UnorderedConfig(**TINY))


def binary_clips(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, C, SIZE, SIZE, generator=g) > 0.7).float()


def test_shapes():
    model = tiny_model()
    x = binary_clips()
    static, dynamic = model.encode(x)
    assert static.mean.shape == (B, TINY["static_dim"])
    assert dynamic.mean.shape == (B, T, TINY["dynamic_dim"])
    out = model(x)
    assert out.recon.shape == x.shape and 0 <= out.recon.min() and out.recon.max() <= 1
    assert out.dynamic_prior.mean.shape == (B, 1, TINY["dynamic_dim"])
    like = torch.zeros(1)
    generated = model.decode(model.sample_static(3, like), model.sample_dynamic(3, 6, like))
    assert generated.shape == (3, 6, C, SIZE, SIZE)


def test_frame_order_does_not_matter():
    """q(z_t | f, x_t) reads its own frame only: permuting the frames permutes the posteriors."""
    model = tiny_model().eval()
    x = binary_clips()
    order = torch.tensor([3, 0, 4, 1, 2])
    f = torch.randn(B, TINY["static_dim"])
    q = model.encode_dynamic(model.frame_encoder(x), f)
    q_permuted = model.encode_dynamic(model.frame_encoder(x[:, order]), f)
    torch.testing.assert_close(q_permuted.mean, q.mean[:, order])


def test_static_encoder_sees_n_frames_of_the_clip():
    model = tiny_model().eval()
    seen = []
    model.static_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = binary_clips()
    model.encode(x)
    frames = seen[0]  # (B, N, C, H, W)
    assert frames.shape == (B, 3, C, SIZE, SIZE)
    for b in range(B):
        matches = [(x[b] == frame).flatten(1).all(1).nonzero().flatten() for frame in frames[b]]
        assert len({int(m[0]) for m in matches}) == 3, "the N frames are distinct frames of the clip"
    with pytest.raises(ValueError, match="n_frames"):
        model.encode(x[:, :2])


def test_sample_dynamic_draws_from_the_prior_given_f():
    model = tiny_model().eval()
    f = torch.randn(2, TINY["static_dim"])
    torch.manual_seed(0)
    z = model.sample_dynamic(2, 4000, like=f, static=f)  # (2, 4000, D_z)
    prior = model.prior(f)
    torch.testing.assert_close(z.mean(1), prior.mean, atol=0.1, rtol=0)
    torch.testing.assert_close(z.var(1).log(), prior.logvar, atol=0.1, rtol=0)


def test_loss_is_finite_and_adam_steps_lower_it():
    model = tiny_model()
    x = binary_clips()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at_fixed_noise() -> dict[str, torch.Tensor]:
        torch.manual_seed(7)  # same frames for q(f) and the same posterior samples
        return model.loss(x, model(x), {}, dataset_size=100)

    with torch.no_grad():
        terms = loss_at_fixed_noise()
    assert set(terms) == {"recon", "kl_static", "kl_dynamic", "loss"}
    assert all(torch.isfinite(v) for v in terms.values()), terms
    for _ in range(3):
        optimizer.zero_grad()
        loss_at_fixed_noise()["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_at_fixed_noise()["loss"]
    assert after < terms["loss"], f"loss went from {terms['loss'].item():.2f} to {after.item():.2f}"


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model().eval()
    save_model(tmp_path / "model.pt", "unordered", model)
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config == model.config
    f = torch.randn(2, TINY["static_dim"])
    torch.testing.assert_close(loaded.prior(f).mean, model.prior(f).mean)
