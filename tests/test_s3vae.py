"""S3VAE on a tiny config: shapes, the causal prior, the loss terms of each variant, the MI estimators."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_adam_steps_lower
from torch.distributions import Normal, kl_divergence

from models import S3VAE, S3VAEConfig
from models.blocks import LIKELIHOODS, Gaussian, hide_colors, pixel_nll
from models.s3vae import DirectionHeads, direction_prediction, mutual_information, static_consistency

B, T, C, SIZE = 6, 5, 3, 16
GRID, TOPK, CELLS = 4, 2, 9
TINY = dict(
    image_size=SIZE,
    conv_channels=(4, 8),  # 16 / 2**2 = 4: FrameEncoder needs the side divisible by 2**len(channels)
    frame_dim=12,
    hidden_dim=10,
    static_dim=7,
    dynamic_dim=3,
)
VARIANTS = {
    "baseline": {},
    "full": {"scc_weight": 100.0, "dfp_weight": 100.0, "dfp_classes": GRID * GRID, "mi_weight": 1.0},
    "baseline_sv": {
        "supervised_weight": 100.0,
        "static_classes": {"body": 3},
        "dynamic_classes": {"action": 2},
    },
    # S3VAE full as its authors' code trains it (config.yaml's anchor `authors`)
    "authors_full": {
        "dynamic_encoder": "shared",
        "prior_layers": 2,
        "weight_init": "normal",
        "scc_weight": 100.0,
        "scc_shuffle": "clip",
        "dfp_weight": 0.1,
        "dfp_target": "flow_direction",
        "dfp_classes": CELLS,
        "mi_weight": 0.01,
        "mi_form": "relu_mean",
    },
    # SMMNIST's ablation: an order-free digit pair (a class distribution) on z_f, positions regressed on z_t
    "baseline_sv_states": {
        "supervised_weight": 100.0,
        "static_classes": {"digits": 10},
        "dynamic_regression": {"position": 4},
    },
}
ELBO = {"recon", "kl_static", "kl_dynamic", "loss"}
EXPECTED_TERMS = {
    "baseline": ELBO,
    "full": ELBO | {"scc", "dfp", "mi"},
    "authors_full": ELBO | {"scc", "dfp", "mi"},
    "baseline_sv": ELBO | {"supervised"},
    "baseline_sv_states": ELBO | {"supervised"},
}


def tiny_model(variant: str = "baseline", seed: int = 0) -> S3VAE:
    torch.manual_seed(seed)
    return S3VAE(S3VAEConfig(**TINY, **VARIANTS[variant]))


def batch(seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, T, C, SIZE, SIZE, generator=g)
    targets = {
        "flow_topk": torch.stack(
            [torch.randperm(GRID * GRID, generator=g)[:TOPK] for _ in range(B * T)]
        ).view(B, T, TOPK),
        "body": torch.randint(0, 3, (B,), generator=g),
        "action": torch.randint(0, 2, (B,), generator=g),
        "digits": torch.softmax(torch.randn(B, 10, generator=g), dim=-1),
        "position": torch.randn(B, T, 2, 2, generator=g),
        # each cell's direction bin, -1 where it is still; no flow enters the first frame
        "flow_direction": torch.randint(-1, 8, (B, T, CELLS), generator=g).index_fill_(
            1, torch.tensor([0]), -1
        ),
    }
    return x, targets


def test_output_shapes():
    model = tiny_model()
    x, _ = batch()
    out = model(x)
    D_h, D_f, D_z = TINY["frame_dim"], TINY["static_dim"], TINY["dynamic_dim"]
    assert out.features.shape == (B, T, D_h)
    assert out.static.mean.shape == out.static.logvar.shape == (B, D_f)
    assert out.dynamic.mean.shape == out.dynamic.logvar.shape == (B, T, D_z)
    assert out.static_sample.shape == (B, D_f)
    assert out.dynamic_sample.shape == (B, T, D_z)
    assert out.dynamic_prior.mean.shape == out.dynamic_prior.logvar.shape == (B, T, D_z)
    assert out.recon.shape == x.shape
    assert out.recon.min() >= 0 and out.recon.max() <= 1


def test_decode_and_prior_sample_shapes():
    model = tiny_model().eval()
    like = torch.zeros(1)
    z_f = model.sample_static(4, like=like)
    z = model.sample_dynamic(4, 9, like=like)
    assert z_f.shape == (4, TINY["static_dim"])
    assert z.shape == (4, 9, TINY["dynamic_dim"])
    assert model.decode(z_f, z).shape == (4, 9, C, SIZE, SIZE)


def test_frame_encoder_rejects_a_size_not_divisible_by_the_strides():
    with pytest.raises(ValueError, match="not divisible"):
        S3VAE(S3VAEConfig(**{**TINY, "image_size": 18}))


def test_prior_is_causal():
    """Teacher forcing: p(z_t | z_<t) must not see z_t itself, and must see it at every later step."""
    prior = tiny_model().prior
    z = torch.randn(2, T, TINY["dynamic_dim"])
    t = 2
    changed = z.clone()
    changed[:, t] += 3.0
    a, b = prior(z), prior(changed)
    for field in ("mean", "logvar"):
        before, after = getattr(a, field), getattr(b, field)
        assert torch.equal(before[:, : t + 1], after[:, : t + 1]), f"{field} at steps <= {t} saw z_{t}"
        for later in range(t + 1, T):
            assert not torch.allclose(before[:, later], after[:, later]), (
                f"{field} at step {later} ignored z_{t}"
            )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_terms_follow_the_variant_weights(variant: str):
    model = tiny_model(variant)
    x, targets = batch()
    torch.manual_seed(3)
    terms = model.loss(x, model(x), targets, dataset_size=100)
    assert set(terms) == EXPECTED_TERMS[variant]
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), f"{name} = {value}"
    c = model.config
    weights = {
        "recon": 1.0,
        "kl_static": 1.0,
        "kl_dynamic": 1.0,
        "scc": c.scc_weight,
        "dfp": c.dfp_weight,
        "mi": c.mi_weight,
        "supervised": c.supervised_weight,
    }
    expected = sum(weights[name] * value for name, value in terms.items() if name != "loss")
    torch.testing.assert_close(terms["loss"], expected)
    # Every regulariser contributes: the loss is not the bare ELBO.
    if variant != "baseline":
        assert not torch.isclose(terms["loss"], terms["recon"] + terms["kl_static"] + terms["kl_dynamic"])


def test_supervised_heads_learn_a_digit_distribution_and_positions():
    model = tiny_model("baseline_sv_states")
    x, targets = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(8):
        torch.manual_seed(step)
        terms = model.loss(x, model(x), targets, dataset_size=100)
        losses.append(terms["supervised"].item())
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert model.dynamic_regression_heads["position"][-1].weight.grad.abs().sum() > 0
    assert losses[-1] < losses[0]


def test_one_adam_step_lowers_the_full_loss():
    model = tiny_model("full")
    x, targets = batch()

    def loss_at_fixed_noise() -> torch.Tensor:
        torch.manual_seed(7)  # same posterior samples and the same SCC shuffle before and after the step
        return model.loss(x, model(x), targets, dataset_size=100)["loss"]

    assert_adam_steps_lower(model, loss_at_fixed_noise, lr=1e-3)


# --- mutual information ------------------------------------------------------------------------------
M, N = 8, 1000  # minibatch and dataset size


def _posterior(mean: torch.Tensor, logvar: float) -> tuple[Gaussian, torch.Tensor]:
    """A posterior with the given means and a shared log-variance, and one sample from it."""
    g = Gaussian(mean, torch.full_like(mean, logvar))
    torch.manual_seed(0)
    return g, g.rsample()


def _independent() -> tuple:
    """The static posterior is the same for every clip: z_f carries nothing about the clip or z_1:T."""
    static, static_sample = _posterior(torch.randn(1, 4).expand(M, 4).clone(), 0.0)
    dynamic, dynamic_sample = _posterior(3 * torch.randn(M, T, 2), -1.0)
    return static, static_sample, dynamic, dynamic_sample


def _identifying() -> tuple:
    """Both posteriors are near-deterministic and distinct per clip: each latent identifies the clip."""
    static, static_sample = _posterior(torch.arange(M, dtype=torch.float32)[:, None].repeat(1, 4), -10.0)
    dynamic, dynamic_sample = _posterior(
        torch.arange(M, dtype=torch.float32)[:, None, None].repeat(1, T, 2), -10.0
    )
    return static, static_sample, dynamic, dynamic_sample


def test_mss_is_zero_for_independent_latents():
    mi = mutual_information(*_independent(), dataset_size=N, estimator="mss")
    assert abs(mi.item()) < 0.05


def test_mws_has_offset_log_n_per_frame_for_independent_latents():
    """MWS weighs every pair 1/(NM): log q(z_f) loses log N while the joint and q(z_t) terms cancel, so
    independent latents score log N per frame, not 0 (the constant bias the docstring names; no gradient)."""
    mi = mutual_information(*_independent(), dataset_size=N, estimator="mws")
    assert mi.item() == pytest.approx(T * math.log(N), abs=0.05)


def test_mss_is_log_n_per_frame_for_latents_that_identify_the_clip():
    independent = mutual_information(*_independent(), dataset_size=N, estimator="mss")
    identifying = mutual_information(*_identifying(), dataset_size=N, estimator="mss")
    assert identifying.item() == pytest.approx(T * math.log(N), abs=0.05)
    assert identifying.item() > independent.item() + 0.9 * T * math.log(N)


def test_mws_is_log_nm_per_frame_for_latents_that_identify_the_clip():
    identifying = mutual_information(*_identifying(), dataset_size=N, estimator="mws")
    assert identifying.item() == pytest.approx(T * math.log(N * M), abs=0.05)


# Known answers on a minibatch that is the whole dataset (M = N, so "mss" weighs every clip 1/N and the
# estimate is the exact mutual information of the clips' latents): K sharp clusters per latent.
K = 4
CLIPS = K * K * K  # every (z_f, z_1, z_2) combination once


def _clusters(static_cluster: torch.Tensor, dynamic_cluster: torch.Tensor) -> tuple:
    """Near-deterministic posteriors at 10 * cluster index: static (M,), dynamic (M, T) indices."""
    static, static_sample = _posterior(10.0 * static_cluster.float()[:, None], -8.0)
    dynamic, dynamic_sample = _posterior(10.0 * dynamic_cluster.float()[..., None], -8.0)
    return static, static_sample, dynamic, dynamic_sample


def _balanced() -> tuple[torch.Tensor, torch.Tensor]:
    """z_f's cluster and two frames' clusters, every combination once: each z_t is independent of z_f."""
    index = torch.arange(CLIPS)
    return index % K, torch.stack([(index // K) % K, index // (K * K)], dim=1)


def _exact_mi(static_cluster, dynamic_cluster) -> torch.Tensor:
    posteriors = _clusters(static_cluster, dynamic_cluster)
    return mutual_information(*posteriors, dataset_size=CLIPS, estimator="mss")


def test_per_frame_mi_of_independent_clusters_is_zero():
    static_cluster, dynamic_cluster = _balanced()
    assert _exact_mi(static_cluster, dynamic_cluster).item() == pytest.approx(0.0, abs=1e-3)


def test_per_frame_mi_of_identical_clusters_is_log_k_per_frame():
    static_cluster, _ = _balanced()
    same = static_cluster[:, None].repeat(1, 2)  # z_t = z_f at both frames
    assert _exact_mi(static_cluster, same).item() == pytest.approx(2 * math.log(K), abs=1e-3)


def test_a_trajectory_that_identifies_the_clip_shares_nothing_with_z_f_frame_by_frame():
    """K * K clips, each a distinct pair (z_1, z_2), so z_1:T identifies the clip; z_f = z_1 + z_2 mod K is
    independent of each single z_t. Per frame the MI is 0, as Eq. 7 wants; the flattened I(z_f; z_1:T)
    the estimator once computed is log K, the whole of z_f, with nothing a frame could drop."""
    index = torch.arange(K * K)
    dynamic_cluster = torch.stack([index % K, index // K], dim=1)  # (K * K, 2): every pair once
    static_cluster = dynamic_cluster.sum(dim=1) % K
    static, static_sample, dynamic, dynamic_sample = _clusters(static_cluster, dynamic_cluster)
    per_frame = mutual_information(static, static_sample, dynamic, dynamic_sample, K * K, "mss")
    flattened = mutual_information(  # the whole trajectory as one (1, T * D_z) "frame"
        static,
        static_sample,
        Gaussian(dynamic.mean.flatten(1)[:, None], dynamic.logvar.flatten(1)[:, None]),
        dynamic_sample.flatten(1)[:, None],
        dataset_size=K * K,
        estimator="mss",
    )
    assert per_frame.item() == pytest.approx(0.0, abs=1e-3)
    assert flattened.item() == pytest.approx(math.log(K), abs=1e-3)


def test_unknown_mi_estimator_raises():
    with pytest.raises(ValueError, match="unknown MI estimator 'nope'"):
        mutual_information(*_independent(), dataset_size=N, estimator="nope")


def test_mss_needs_two_clips():
    static, static_sample, dynamic, dynamic_sample = _independent()
    one_static = Gaussian(static.mean[:1], static.logvar[:1])
    one_dynamic = Gaussian(dynamic.mean[:1], dynamic.logvar[:1])
    with pytest.raises(ValueError, match="at least 2"):
        mutual_information(one_static, static_sample[:1], one_dynamic, dynamic_sample[:1], N, "mss")


# --- Gaussian ------------------------------------------------------------------------------------------
def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p_mean, q_mean = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    p_logvar, q_logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    ours = Gaussian(p_mean, p_logvar).kl(Gaussian(q_mean, q_logvar))
    reference = kl_divergence(
        Normal(p_mean, torch.exp(0.5 * p_logvar)), Normal(q_mean, torch.exp(0.5 * q_logvar))
    )
    torch.testing.assert_close(ours, reference)
    assert (ours > 0).all()


def test_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, logvar, x = (
        torch.randn(4, 6, generator=g),
        torch.randn(4, 6, generator=g),
        torch.randn(4, 6, generator=g),
    )
    ours = Gaussian(mean, logvar).log_prob(x)
    torch.testing.assert_close(ours, Normal(mean, torch.exp(0.5 * logvar)).log_prob(x))


def test_standard_like_is_a_unit_gaussian():
    x = torch.randn(3, 2)
    unit = Gaussian.standard_like(x)
    torch.testing.assert_close(unit.log_prob(x), Normal(0.0, 1.0).log_prob(x))


# --- likelihoods -------------------------------------------------------------------------------------
def test_gaussian_likelihood_is_the_squared_error_over_two_sigma_squared():
    x, _ = batch()
    recon = torch.rand_like(x)
    squared = ((recon - x) ** 2).sum() / B
    torch.testing.assert_close(pixel_nll(recon, x, "gaussian"), squared)  # sigma^2 = 1/2: the papers' loss
    torch.testing.assert_close(pixel_nll(recon, x, "gaussian", sigma=0.1), squared / (2 * 0.01))


def test_calibrated_gaussian_is_the_gaussian_at_its_best_sigma():
    """The calibrated NLL is the full Gaussian NLL (with its D log sigma term) at sigma^2 = MSE, and no
    other sigma gives a lower one."""
    x, _ = batch()
    recon = torch.rand_like(x)
    D = x[0].numel()

    def full_nll(sigma: float) -> float:
        return float(pixel_nll(recon, x, "gaussian", sigma=sigma) + D * math.log(sigma))

    mse = float(((recon - x) ** 2).mean())
    calibrated = float(pixel_nll(recon, x, "gaussian_calibrated"))
    assert calibrated == pytest.approx(full_nll(math.sqrt(mse)), rel=1e-5)
    for factor in (0.5, 0.9, 1.1, 2.0):
        assert full_nll(factor * math.sqrt(mse)) > calibrated


def test_every_likelihood_trains_s3vae():
    x, targets = batch()
    for likelihood in LIKELIHOODS:
        torch.manual_seed(0)
        model = S3VAE(S3VAEConfig(**TINY, likelihood=likelihood))

        def loss_at_fixed_noise(model=model) -> torch.Tensor:
            torch.manual_seed(7)
            return model.loss(x, model(x), targets, dataset_size=100)["loss"]

        assert_adam_steps_lower(model, loss_at_fixed_noise, lr=1e-3)
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        pixel_nll(x, x, "poisson")


# --- each regulariser acts --------------------------------------------------------------------------
REGULARISERS = {
    # weight field: (extra settings that switch the term's inputs on, the term's name)
    "scc_weight": ({"scc_margin": 100.0}, "scc"),  # a margin no tiny model satisfies: the hinge is active
    "dfp_weight": ({"dfp_classes": GRID * GRID}, "dfp"),
    "mi_weight": ({}, "mi"),
    "swap_weight": ({}, "swap"),
    "kl_static_weight": ({}, "kl_static"),
    "kl_dynamic_weight": ({}, "kl_dynamic"),
}


def _gradient(weight: str, value: float) -> torch.Tensor:
    extra, _ = REGULARISERS[weight]
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(**TINY, **extra, **{weight: value}))
    x, targets = batch()
    torch.manual_seed(7)  # the same posterior samples, shuffle and swap partners for every weight
    model.loss(x, model(x), targets, dataset_size=100)["loss"].backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("weight", sorted(REGULARISERS))
def test_each_regulariser_weight_changes_the_gradient(weight: str):
    """Doubling a term's weight adds that term's own gradient once more: the difference is linear in the
    weight and not zero, so the term reaches the parameters (a saturated or satisfied term would not)."""
    one, two, three = (_gradient(weight, value) for value in (1.0, 2.0, 3.0))
    assert (two - one).norm() > 1e-6 * one.norm()
    torch.testing.assert_close(three - two, two - one, rtol=1e-3, atol=1e-5)


# --- the beyond-paper options of full_swap ---------------------------------------------------------
def test_frame_encoder_reads_frame_t_alone():
    """dynamic_encoder 'frame' is q(z_t | x_t): changing frame t moves z_t and no other z."""
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(**TINY, dynamic_encoder="frame")).eval()
    x, _ = batch()
    changed = x.clone()
    changed[:, 2] = torch.rand_like(changed[:, 2])
    with torch.no_grad():
        before, after = model.encode(x)[1].mean, model.encode(changed)[1].mean
    assert not torch.allclose(before[:, 2], after[:, 2])
    others = [t for t in range(T) if t != 2]
    torch.testing.assert_close(before[:, others], after[:, others])


def test_hidden_colours_keep_black_and_shapes_and_drop_the_colour():
    x = torch.zeros(2, 3, 3, 8, 8)
    x[0, :, 0, 2:5, 2:5] = 1.0  # a red square
    x[1, :, 2, 2:5, 2:5] = 1.0  # the same square in blue
    torch.manual_seed(0)
    hidden = hide_colors(x)
    assert (hidden[:, :, :, 0, 0] == 0).all()  # black stays black
    assert ((hidden[:, :, :1] > 0) == (x.sum(2, keepdim=True) > 0)).all()  # the shapes stay
    assert (hidden[:, :, 0] == hidden[:, :, 1]).all() and (hidden[:, :, 1] == hidden[:, :, 2]).all()  # grey


def test_colour_blind_dynamics_apply_in_training_only():
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(**TINY, color_blind_dynamics=True))
    x, _ = batch()
    model.eval()
    with torch.no_grad():
        encoded = model.encode(x)[1].mean
        torch.manual_seed(1)
        evaluated = model(x).dynamic.mean
    torch.testing.assert_close(evaluated, encoded)  # at test time q(z_t) reads the clip as it is
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        trained = model(x).dynamic.mean
    assert not torch.allclose(trained, encoded, atol=1e-4)


def _landmark_model() -> S3VAE:
    torch.manual_seed(0)
    config = S3VAEConfig(
        **TINY,
        dfp_weight=1.0,
        dfp_target="landmark_distances",
        dfp_classes=3,
        dfp_target_mean=(0.1, 0.1, 0.04),
        dfp_target_std=(0.01, 0.01, 0.02),
    )
    return S3VAE(config)


def _landmark_targets(seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    found = torch.ones(B, T, dtype=torch.uint8)
    found[0, 1] = 0
    return {"distances": 0.05 + 0.05 * torch.rand(B, T, 3, generator=g), "face_found": found}


def test_landmark_dfp_regresses_standardised_distances_where_a_face_was_found():
    model = _landmark_model()
    x, _ = batch()
    targets = _landmark_targets()
    out = model(x)
    dfp = model.loss(x, out, targets, dataset_size=100)["dfp"]
    prediction = model.dfp_head(out.dynamic_sample).detach()
    standardised = (targets["distances"] - torch.tensor([0.1, 0.1, 0.04])) / torch.tensor([0.01, 0.01, 0.02])
    squared = (prediction - standardised).square() * targets["face_found"][..., None]
    assert torch.allclose(dfp.detach(), squared.sum() / B)
    # a frame without a face has no target: changing its distances changes nothing
    moved = {**targets, "distances": targets["distances"].clone()}
    moved["distances"][0, 1] += 1.0
    assert torch.equal(model.loss(x, out, moved, dataset_size=100)["dfp"], dfp)
    moved["distances"][0, 2] += 1.0
    assert not torch.equal(model.loss(x, out, moved, dataset_size=100)["dfp"], dfp)


def test_landmark_dfp_trains_the_head_on_z_t():
    model = _landmark_model()
    x, _ = batch()
    model.loss(x, model(x), _landmark_targets(), dataset_size=100)["dfp"].backward()
    assert model.dfp_head[0].weight.grad.abs().sum() > 0


# --- the authors' recipe (ODE-RL 0d4c701 code_sprite) ------------------------------------------------------
def test_the_shared_encoder_gives_every_z_t_the_whole_clip():
    """The authors' z_t comes from a tanh RNN over a bidirectional LSTM: z_1 changes with the last frame,
    where the causal q(z_t | x_<=t) of the paper's text does not."""
    x, _ = batch()
    later = x.clone()
    later[:, -1] = torch.rand_like(later[:, -1])
    for encoder, moves in (("shared", True), ("causal", False)):
        torch.manual_seed(0)
        model = S3VAE(S3VAEConfig(**TINY, dynamic_encoder=encoder)).eval()
        first, changed = (model.encode(clip)[1].mean[:, 0] for clip in (x, later))
        assert (not torch.allclose(first, changed)) is moves, encoder


def test_the_shared_encoder_reads_one_lstm_for_both_latents_and_leaky_static_heads():
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(**TINY, dynamic_encoder="shared")).eval()
    assert model.dynamic_lstm is None and isinstance(model.dynamic_rnn, torch.nn.RNN)
    features = model.frame_encoder(batch()[0])
    static, dynamic = model.encode_features(features)
    torch.testing.assert_close(static.mean, model.encode_static(features).mean)
    torch.testing.assert_close(dynamic.mean, model.encode_dynamic(features).mean)
    both, _ = model.static_lstm(features)
    summary = torch.cat([both[:, -1, : TINY["hidden_dim"]], both[:, 0, TINY["hidden_dim"] :]], dim=-1)
    linear = model.static_head.proj[0](summary)[:, : TINY["static_dim"]]
    torch.testing.assert_close(static.mean, torch.nn.functional.leaky_relu(linear, 0.2))


def direction_heads_with_logits(direction: torch.Tensor, moving: torch.Tensor) -> DirectionHeads:
    """Heads whose outputs are `direction` (cells, 8) and `moving` (cells,) logits whatever z_t is."""
    heads = DirectionHeads(z_dim=3, cells=len(moving))
    with torch.no_grad():
        for cell, head in enumerate(heads.directions):
            head[-1].weight.zero_()
            head[-1].bias.copy_(direction[cell])
        heads.moving[-1].weight.zero_()
        heads.moving[-1].bias.copy_(moving)
    return heads


def test_direction_loss_is_the_authors_averaged_cross_entropies():
    """Known answer on two clips of three frames, two cells: the direction cross-entropy over the moving
    (cell, frame) entries only, plus the binary cross-entropy of which cells move over frames 2 and 3."""
    direction, moving = torch.randn(2, 8), torch.tensor([1.5, -0.5])
    heads = direction_heads_with_logits(direction, moving)
    labels = torch.tensor([[[3, 3], [5, -1], [-1, 0]], [[-1, -1], [-1, -1], [7, 2]]])  # (B, T, cells)
    out = SimpleNamespace(dynamic_sample=torch.randn(2, 3, 3))
    loss = direction_prediction(heads, out, {"flow_direction": labels})
    entries = [(b, t, k) for b in range(2) for t in range(3) for k in range(2) if labels[b, t, k] >= 0]
    expected_ce = sum(-torch.log_softmax(direction[k], dim=0)[labels[b, t, k]] for b, t, k in entries) / len(
        entries
    )
    later = (labels[:, 1:] >= 0).float()  # (B, T - 1, cells): frame 1's entries (3, 3 above) are not scored
    expected_bce = torch.nn.functional.binary_cross_entropy_with_logits(moving.expand_as(later), later)
    torch.testing.assert_close(loss, expected_ce + expected_bce)


def test_direction_loss_of_still_clips_is_the_moving_cells_alone():
    heads = direction_heads_with_logits(torch.randn(2, 8), torch.tensor([0.3, -2.0]))
    still = torch.full((2, 3, 2), -1)
    loss = direction_prediction(
        heads, SimpleNamespace(dynamic_sample=torch.randn(2, 3, 3)), {"flow_direction": still}
    )
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([0.3, -2.0]).expand(2, 2, 2), torch.zeros(2, 2, 2)
    )
    assert torch.isfinite(loss) and torch.allclose(loss, expected)


def test_relu_mean_mi_averages_where_frame_sum_adds_the_frames():
    """z_t in the same cluster as z_f at both frames: every frame's and clip's estimate is log K, so the
    authors' form gives log K and the per-frame sum 2 log K."""
    static_cluster, _ = _balanced()
    same = _clusters(static_cluster, static_cluster[:, None].repeat(1, 2))
    relu_mean = mutual_information(*same, dataset_size=CLIPS, estimator="mss", form="relu_mean")
    frame_sum = mutual_information(*same, dataset_size=CLIPS, estimator="mss", form="frame_sum")
    assert relu_mean.item() == pytest.approx(math.log(K), abs=1e-3)
    assert frame_sum.item() == pytest.approx(2 * math.log(K), abs=1e-3)


@pytest.mark.parametrize(("shuffle", "several_orders"), [("batch", False), ("clip", True)])
def test_the_scc_positive_is_each_clip_in_its_own_order_or_one_for_the_batch(
    shuffle: str, several_orders: bool
):
    features = torch.arange(B * T, dtype=torch.float32).view(B, T, 1)  # frame t of clip b holds b * T + t
    seen = []

    def encode_static(frames: torch.Tensor) -> Gaussian:
        seen.append(frames)
        return Gaussian(frames.sum(1), torch.zeros(B, 1))

    out = SimpleNamespace(features=features, static=Gaussian(features.sum(1), torch.zeros(B, 1)))
    torch.manual_seed(0)
    static_consistency(encode_static, out, margin=1.0, shuffle=shuffle)
    (shuffled,) = seen
    assert torch.equal(shuffled.sort(dim=1).values, features)  # each clip's own frames, reordered
    order = (shuffled[..., 0] - T * torch.arange(B)[:, None]).long()  # (B, T) the frame order of each clip
    assert (len({tuple(row.tolist()) for row in order}) > 1) is several_orders


def test_the_authors_init_draws_conv_and_linear_weights_from_n_0_001():
    torch.manual_seed(0)
    model = S3VAE(S3VAEConfig(**TINY, weight_init="normal"))
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.01, rel=0.1)
    assert all(m.bias is None or not m.bias.any() for m in convs)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in norms)
    deconvs = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]  # not touched there
    assert torch.cat([m.weight.flatten() for m in deconvs]).std().item() > 0.05


def test_a_two_layer_prior_is_still_causal():
    torch.manual_seed(0)
    prior = S3VAE(S3VAEConfig(**TINY, prior_layers=2)).prior
    assert prior.lstm.num_layers == 2
    z = torch.randn(2, T, TINY["dynamic_dim"])
    changed = z.clone()
    changed[:, 2] += 3.0
    assert torch.equal(prior(z).mean[:, :3], prior(changed).mean[:, :3])
    assert not torch.allclose(prior(z).mean[:, 3], prior(changed).mean[:, 3])


@pytest.mark.parametrize(
    "setting", [{"dynamic_encoder": "both"}, {"mi_form": "sum"}, {"scc_shuffle": "frame"}]
)
def test_an_unknown_setting_names_itself(setting: dict):
    (name,) = setting
    with pytest.raises(ValueError, match=f"S3VAEConfig.{name}"):
        S3VAEConfig(**TINY, **setting)
