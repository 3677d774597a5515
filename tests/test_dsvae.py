"""DSVAE on a tiny config: each (encoder, dynamics) pair's shapes, loss, optimisation step, imputation."""

from __future__ import annotations

import pytest
import torch
from conftest import WORKFLOW_CONFIG, assert_adam_steps_lower, call_with_config

from models import DSVAE, DSVAEConfig
from models.blocks import pixel_nll
from pipeline.data.bouncing import build_bouncing
from pipeline.data.clips import load_clips
from pipeline.data.h5io import GENERATION_DIRECTIONS
from pipeline.evaluate.table1 import generate
from pipeline.train.checkpoint import load_model, save_model
from pipeline.train.loop import TrainSettings, fit

B, T, C, SIZE = 4, 5, 1, 16
TINY = dict(
    in_channels=C,
    image_size=SIZE,
    conv_channels=(4, 8),
    frame_dim=12,
    hidden_dim=10,
    static_dim=6,
    dynamic_dim=3,
    state_dim=9,
)
VARIANTS = [
    (encoder, dynamics)
    for encoder in ("factorised", "full")
    for dynamics in ("stochastic", "lstm_f", "lstm_c")
]


def tiny_model(encoder: str = "factorised", dynamics: str = "stochastic", seed: int = 0) -> DSVAE:
    torch.manual_seed(seed)
    return DSVAE(DSVAEConfig(**TINY, encoder=encoder, dynamics=dynamics, likelihood="bernoulli"))


def binary_clips(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, C, SIZE, SIZE, generator=g) > 0.7).float()


@pytest.mark.parametrize(("encoder", "dynamics"), VARIANTS)
def test_shapes_follow_the_s3vae_interface(encoder: str, dynamics: str):
    model = tiny_model(encoder, dynamics)
    x = binary_clips()
    static, dynamic = model.encode(x)
    assert static.mean.shape == (B, TINY["static_dim"])
    assert dynamic.mean.shape == dynamic.logvar.shape == (B, T, TINY["dynamic_dim"])
    out = model(x)
    assert out.recon.shape == x.shape
    assert 0 <= out.recon.min() and out.recon.max() <= 1
    assert out.dynamic_sample.shape == (B, T, TINY["dynamic_dim"])
    like = torch.zeros(1)
    generated = model.decode(model.sample_static(3, like), model.sample_dynamic(3, 7, like))
    assert generated.shape == (3, 7, C, SIZE, SIZE)


@pytest.mark.parametrize("dynamics", ["stochastic", "lstm_c"])
def test_table1_generation_runs_unchanged(dynamics: str):
    model = tiny_model("full", dynamics).eval()
    x = binary_clips()
    for keep in GENERATION_DIRECTIONS:
        assert generate(model, x, keep).shape == x.shape


@pytest.mark.parametrize("dynamics", ["lstm_f", "lstm_c"])
def test_deterministic_dynamics_have_one_z_per_clip(dynamics: str):
    model = tiny_model("full", dynamics)
    _, dynamic = model.encode(binary_clips())
    assert torch.equal(dynamic.mean, dynamic.mean[:, :1].expand_as(dynamic.mean))
    z = model.sample_dynamic(2, 4, like=torch.zeros(1))
    assert torch.equal(z, z[:, :1].expand_as(z))


@pytest.mark.parametrize(("encoder", "dynamics"), VARIANTS)
def test_loss_terms_are_finite_and_sum_to_the_loss(encoder: str, dynamics: str):
    model = tiny_model(encoder, dynamics)
    x = binary_clips()
    terms = model.loss(x, model(x), {}, dataset_size=100)
    assert set(terms) == {"recon", "kl_static", "kl_dynamic", "loss"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values()), terms
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl_static"] + terms["kl_dynamic"])


@pytest.mark.parametrize(("encoder", "dynamics"), [("factorised", "stochastic"), ("full", "lstm_c")])
def test_adam_steps_lower_the_loss_on_a_fixed_batch(encoder: str, dynamics: str):
    model = tiny_model(encoder, dynamics)
    x = binary_clips()

    def loss_at_fixed_noise() -> torch.Tensor:
        torch.manual_seed(7)
        return model.loss(x, model(x), {}, dataset_size=100)["loss"]

    assert_adam_steps_lower(model, loss_at_fixed_noise, lr=3e-3, steps=3)


@pytest.mark.parametrize(("encoder", "dynamics"), VARIANTS)
def test_impute_keeps_the_clip_length_and_ignores_the_unobserved_frames(encoder: str, dynamics: str):
    model = tiny_model(encoder, dynamics).eval()
    x = binary_clips()
    changed = x.clone()
    changed[:, 2:] = 1 - changed[:, 2:]
    torch.manual_seed(0)
    a = model.impute(x, observed_steps=2)
    torch.manual_seed(0)
    b = model.impute(changed, observed_steps=2)
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert model.impute(x, observed_steps=T).shape == x.shape
    with pytest.raises(ValueError, match="observed_steps"):
        model.impute(x, observed_steps=0)


def test_the_prior_roll_out_continues_after_its_context():
    """context z_1:t: the first sample is drawn from p(z_t+1 | z_<=t), the same as teacher forcing gives."""
    prior = tiny_model().prior
    context = torch.randn(2, 3, TINY["dynamic_dim"])
    teacher_forced = prior(torch.cat([context, torch.zeros(2, 1, TINY["dynamic_dim"])], dim=1))
    torch.manual_seed(0)
    sample = prior.sample(2, 1, like=context, context=context)  # (2, 1, D_z)
    torch.manual_seed(0)
    expected = teacher_forced.mean[:, 3:] + torch.randn(2, 1, TINY["dynamic_dim"]) * torch.exp(
        0.5 * teacher_forced.logvar[:, 3:]
    )
    torch.testing.assert_close(sample, expected)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model("full", "lstm_f").eval()
    path = tmp_path / "model.pt"
    save_model(path, "dsvae", model)
    loaded = load_model(path)
    assert loaded.config == model.config
    x = binary_clips()
    torch.testing.assert_close(loaded.encode(x)[1].mean, model.encode(x)[1].mean)


def test_unknown_variant_names_the_field():
    with pytest.raises(ValueError, match="dynamics"):
        DSVAEConfig(dynamics="lstm_x")


def test_bernoulli_pixel_nll_is_the_binary_cross_entropy_per_clip():
    x = binary_clips()
    recon = torch.rand_like(x).clamp(0.01, 0.99)
    expected = torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") / B
    torch.testing.assert_close(pixel_nll(recon, x, "bernoulli"), expected)
    with pytest.raises(ValueError, match="'poisson'"):
        pixel_nll(recon, x, "poisson")


def test_trains_through_the_shared_loop_on_the_bouncing_dataset(tmp_path):
    """The training loop S3VAE uses runs DSVAE unchanged on binary bouncing-ball clips."""
    path = tmp_path / "bouncing.h5"
    call_with_config(
        build_bouncing,
        WORKFLOW_CONFIG,
        output=path,
        train_sequences=8,
        test_sequences=4,
        frames=T,
        image_size=SIZE,
        seed=0,
    )
    model = tiny_model("factorised", "lstm_c")

    def loss_fn(net, x, targets):
        return net.loss(x, net(x), targets, dataset_size=8)

    fit(
        model=model,
        loss_fn=loss_fn,
        train_set=load_clips(path, "train"),
        test_set=load_clips(path, "test"),
        settings=TrainSettings(epochs=1, batch_size=4, lr=1e-3),
        run_dir=tmp_path / "run",
        run_config={"test": 1},
    )
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "kl_dynamic" in rows[0]
