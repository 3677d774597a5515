"""S3VAE: self-supervised sequential VAE (Zhu, Min, Kadav, Graf; CVPR 2020).

A sequence x_1:T is encoded into one static latent z_f (from the whole clip) and dynamic latents z_1:T
(z_t from a causal LSTM, q(z_t | x_<=t)). The decoder renders frame t from [z_f, z_t]. Priors:
p(z_f) = N(0, I) and a learned LSTM prior p(z_t | z_<t). Training maximises the ELBO (Eq. 5) plus three
regularisers, each switched off by a zero weight:

- L_SCC (Eq. 6, `static_consistency`): triplet loss on z_f; positive = the same clip shuffled in time,
  negative = another clip.
- L_DFP (`dynamic_factor_prediction`): a two-layer head on z_t predicts the dynamic pseudo labels: the
  top-k optical-flow cells of each frame (video, `dfp_target="flow_topk"`), or whether each frame is silent
  (audio, section 4.2, `dfp_target="silence"`), both per-frame binary targets scored by a summed binary
  cross-entropy; or, on faces (section 4.2), it regresses the three landmark distances of each frame, two
  eyelid gaps and the inner-lip gap (`dfp_target="landmark_distances"`), by a summed squared error.
- L_MI (Eq. 7-8, `mutual_information`): a minibatch estimate of sum_t I(z_f; z_t), penalised.

The ground-truth ablation (`baseline_sv`, `supervised_loss`) replaces pseudo labels by labels: heads on z_f
predict the static factors, heads on z_t the dynamic ones and regress the per-frame states (SMMNIST: digit
positions). Beyond the paper, `swap_consistency` checks that swapped latents decode to what they hold.
`S3VAE.loss` adds up the weighted terms; p(z_f), `decode` and q(z_f | x_1:T) are the ones S3VAE shares with
DSVAE (`models.blocks.BidirectionalStaticVAE`).

Frames are images (`frame_kind="image"`, conv trunks) or feature vectors (`"vector"`, e.g. log mel
spectra, MLPs); the rest of the model is the same.

Shapes: B batch, T time, C, H, W frame (or D feature vector), D_h frame feature, D_f static latent,
D_z dynamic latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.blocks import (
    BidirectionalStaticVAE,
    Gaussian,
    GaussianHead,
    LSTMPrior,
    elbo_terms,
    hide_colors,
    mlp,
)


@dataclass(frozen=True)
class S3VAEConfig:
    frame_kind: str = "image"  # "image" (B, T, C, H, W) or "vector" (B, T, D) feature frames
    feature_dim: int = 0  # D of "vector" frames (80 log mel bands, 200 spectrum bins)
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (64, 128, 256, 512)
    frame_dim: int = 512  # D_h, per-frame feature fed to both encoders' LSTMs
    hidden_dim: int = 256  # width of the encoder LSTMs, the prior LSTM and the auxiliary heads
    static_dim: int = 256  # D_f (S3VAE uses 256 on Sprites)
    dynamic_dim: int = 32  # D_z (S3VAE uses 32 on Sprites)
    likelihood: str = "gaussian"  # of the frames, one of models.blocks.LIKELIHOODS
    pixel_sigma: float = math.sqrt(0.5)  # "gaussian" only: sigma^2 = 1/2 is S3VAE's summed squared error
    kl_static_weight: float = 1.0  # beta of KL(q(z_f | x) || p(z_f)); 1 is Eq. 5
    kl_dynamic_weight: float = 1.0  # beta of the sum over t of KL(q(z_t | x_<=t) || p(z_t | z_<t))
    swap_weight: float = 0.0  # latent-swap consistency, beyond the paper (`swap_consistency`)
    color_blind_dynamics: bool = False  # beyond the paper: q(z_t) reads clips without colour in training
    # q(z_t | x_<=t) from a causal LSTM (the paper), or q(z_t | x_t) from frame t alone ("frame", DSVAE's
    # factorised q), beyond the paper
    dynamic_encoder: str = "causal"
    scc_weight: float = 0.0
    scc_margin: float = 1.0
    dfp_weight: float = 0.0
    # "flow_topk": (B, T, k) cell indices; "silence": (B, T) 0/1 per frame; "landmark_distances": (B, T, 3)
    dfp_target: str = "flow_topk"
    dfp_classes: int = 0  # outputs of the DFP head: flow-grid cells G * G, 1 for silence, 3 distances
    # landmark_distances only: the training split's mean and std of each distance, so that each regressed
    # distance weighs like a unit-variance target (raw, they are 0.01 to 0.1 of the inter-ocular distance)
    dfp_target_mean: tuple[float, ...] = ()
    dfp_target_std: tuple[float, ...] = ()
    mi_weight: float = 0.0
    mi_estimator: str = "mws"  # "mws" as S3VAE Eq. 8, or "mss" (stratified, calibrated to 0 when independent)
    supervised_weight: float = 0.0
    static_classes: dict[str, int] = field(default_factory=dict)  # label head -> classes, heads on z_f
    dynamic_classes: dict[str, int] = field(default_factory=dict)  # label head -> classes, heads on z_t
    dynamic_regression: dict[str, int] = field(default_factory=dict)  # per-frame state -> size, heads on z_t


@dataclass(frozen=True)
class S3VAEOutput:
    features: Tensor  # (B, T, D_h) per-frame encoder features
    static: Gaussian  # q(z_f | x_1:T), (B, D_f)
    dynamic: Gaussian  # q(z_t | x_<=t), (B, T, D_z)
    static_sample: Tensor  # (B, D_f)
    dynamic_sample: Tensor  # (B, T, D_z)
    dynamic_prior: Gaussian  # p(z_t | z_<t), teacher-forced on dynamic_sample, (B, T, D_z)
    recon: Tensor  # (B, T, C, H, W) pixel means in [0, 1], or (B, T, D) feature means


def _log_density_matrix(q: Gaussian, sample: Tensor) -> Tensor:
    """log q(sample_i | x_j) for every pair of clips, summed over the last axis: q (M, ..., D), sample
    (M, ..., D) -> (..., M, M), row i the sample of clip i, column j the posterior of clip j."""
    mean, logvar = q.mean.movedim(0, -2), q.logvar.movedim(0, -2)  # (..., M, D)
    point = sample.movedim(0, -2)  # (..., M, D)
    return Gaussian(mean[..., None, :, :], logvar[..., None, :, :]).log_prob(point[..., :, None, :]).sum(-1)


def _minibatch_log_weights(M: int, dataset_size: int, estimator: str, like: Tensor) -> Tensor:
    """log of the weight of q(. | x_j) in the estimate of the aggregate posterior at clip i's sample, (M, M).

    "mws" is minibatch weighted sampling (Chen et al. 2018), the estimator S3VAE Eq. 8 uses: every
    q(. | x_j) weighs 1/(NM). Its constant offsets leave a bias of +log N (0 <= MWS - true MI), which has no
    gradient. "mss" is minibatch stratified sampling: the clip's own term weighs 1/N, the others
    (N-1)/(N(M-1)), so independent latents give about 0 and latents that both identify the clip about log N.
    """
    if estimator == "mws":
        return torch.full((M, M), -math.log(dataset_size * M), device=like.device)
    if estimator == "mss":
        if M < 2:
            raise ValueError("the 'mss' MI estimator needs a minibatch of at least 2 clips")
        other = math.log(dataset_size - 1) - math.log(dataset_size * (M - 1))
        log_weights = torch.full((M, M), other, device=like.device)
        return log_weights.fill_diagonal_(-math.log(dataset_size))
    raise ValueError(f"unknown MI estimator '{estimator}': use 'mws' or 'mss'")


def mutual_information(
    static: Gaussian,
    static_sample: Tensor,
    dynamic: Gaussian,
    dynamic_sample: Tensor,
    dataset_size: int,
    estimator: str = "mws",
) -> Tensor:
    """Minibatch estimate of L_MI = sum_t I(z_f; z_t) (S3VAE Eq. 7-8), one term per frame.

    I(z_f; z_t) = E[log q(z_f, z_t) - log q(z_f) - log q(z_t)], with the aggregate posteriors
    q(.) = E_x q(. | x) estimated from the minibatch of M clips drawn from N (`_minibatch_log_weights`).
    Per frame and not over the flattened z_1:T: a whole trajectory identifies its clip as soon as the
    frames differ, so I(z_f; z_1:T) saturates at its maximum whatever z_f holds and has no gradient that
    would move shared information out of z_f; I(z_f; z_t) is high only when z_t itself shares it.
    """
    M = static_sample.shape[0]
    log_weights = _minibatch_log_weights(M, dataset_size, estimator, static_sample)  # (M, M)
    log_q_static = _log_density_matrix(static, static_sample)  # (M, M)
    log_q_dynamic = _log_density_matrix(dynamic, dynamic_sample)  # (T, M, M)
    log_joint = torch.logsumexp(log_weights + log_q_static + log_q_dynamic, dim=-1)  # (T, M)
    log_static = torch.logsumexp(log_weights + log_q_static, dim=-1)  # (M,)
    log_dynamic = torch.logsumexp(log_weights + log_q_dynamic, dim=-1)  # (T, M)
    return (log_joint - log_static - log_dynamic).mean(dim=-1).sum()


def static_consistency(encode_static, out: S3VAEOutput, margin: float) -> Tensor:
    """L_SCC (Eq. 6), a triplet loss on the means of q(z_f): the anchor is the clip, the positive the same
    clip shuffled in time, the negative another clip of the batch. `encode_static` maps frame features
    (B, T, D_h) to q(z_f)."""
    T = out.features.shape[1]
    # The shuffled clip's frame features are a permutation of the anchor's: no second conv pass.
    shuffled = out.features[:, torch.randperm(T, device=out.features.device)]
    positive = encode_static(shuffled).mean  # (B, D_f)
    negative = out.static.mean.roll(1, dims=0)  # (B, D_f): another clip of the batch
    return F.triplet_margin_loss(out.static.mean, positive, negative, margin=margin)


def dfp_labels(targets: dict[str, Tensor], c: S3VAEConfig, B: int, T: int, device) -> Tensor:
    """L_DFP's per-frame binary targets: top-k flow cells one-hot (B, T, G*G), or silence (B, T, 1)."""
    if c.dfp_target == "silence":
        return targets["silence"].float()[..., None]
    cells = targets["flow_topk"].long()  # (B, T, k)
    return torch.zeros(B, T, c.dfp_classes, device=device).scatter_(-1, cells, 1.0)


def dynamic_factor_prediction(
    head: nn.Module, out: S3VAEOutput, targets: dict[str, Tensor], c: S3VAEConfig
) -> Tensor:
    """L_DFP per clip: the summed binary cross-entropy of `head` on each z_t against the frame's binary
    targets (`dfp_labels`), or the summed squared error of its standardised landmark distances over the
    frames where a face was found (`distances` (B, T, 3), `face_found` (B, T))."""
    prediction = head(out.dynamic_sample).float()  # (B, T, G*G), (B, T, 1) or (B, T, 3)
    B, T = prediction.shape[:2]
    if c.dfp_target == "landmark_distances":
        mean, std = prediction.new_tensor(c.dfp_target_mean), prediction.new_tensor(c.dfp_target_std)
        target = (targets["distances"].float() - mean) / std
        found = targets["face_found"].float()[..., None]  # (B, T, 1): no face, no target
        return ((prediction - target).square() * found).sum() / B
    hot = dfp_labels(targets, c, B, T, prediction.device)
    return F.binary_cross_entropy_with_logits(prediction, hot, reduction="sum") / B


def supervised_loss(
    out: S3VAEOutput,
    targets: dict[str, Tensor],
    static_heads: nn.ModuleDict,
    dynamic_heads: nn.ModuleDict,
    regression_heads: nn.ModuleDict,
) -> Tensor:
    """The ground-truth ablation (`baseline_sv`), per clip: cross-entropy of the static factors' heads on z_f
    and, on every z_t, of the dynamic factors' heads and the squared error of the regressed states."""
    B, T = out.dynamic_sample.shape[:2]
    supervised = sum(
        F.cross_entropy(head(out.static_sample).float(), targets[name]) for name, head in static_heads.items()
    )
    for name, head in dynamic_heads.items():
        logits = head(out.dynamic_sample).float()  # (B, T, classes): every z_t predicts the label
        per_frame = targets[name].repeat_interleave(T, dim=0)  # (B*T,) classes or (B*T, classes)
        supervised = supervised + T * F.cross_entropy(logits.flatten(0, 1), per_frame)
    for name, head in regression_heads.items():
        predicted = head(out.dynamic_sample).float()  # (B, T, size)
        supervised = supervised + F.mse_loss(predicted, targets[name].reshape(B, T, -1), reduction="sum") / B
    return supervised


def swap_consistency(model: S3VAE, out: S3VAEOutput) -> Tensor:
    """Latent-swap consistency, beyond the paper: decode z_f of clip b with z_1:T of clip b-1 and encode the
    result again; its posterior means must be the sources' (fixed targets). A decoder that draws a factor
    from the wrong latent fails it. Summed squared error per clip."""
    B = out.dynamic_sample.shape[0]
    partner = out.dynamic_sample.roll(1, dims=0)  # (B, T, D_z)
    q_static, q_dynamic = model.encode(model.decode(out.static_sample, partner))
    static_error = (q_static.mean - out.static.mean.detach()) ** 2  # (B, D_f)
    dynamic_error = (q_dynamic.mean - out.dynamic.mean.detach().roll(1, dims=0)) ** 2  # (B, T, D_z)
    return (static_error.sum() + dynamic_error.sum()) / B


def label_heads(in_dim: int, hidden_dim: int, outputs: dict[str, int]) -> nn.ModuleDict:
    """One `mlp` head per label, from its number of classes or the size of its regressed state."""
    return nn.ModuleDict({name: mlp(in_dim, hidden_dim, n) for name, n in outputs.items()})


class S3VAE(BidirectionalStaticVAE):
    def __init__(self, config: S3VAEConfig):
        super().__init__(config, frame_latent_dim=config.dynamic_dim)
        c = config
        # z_t sees only the past (causal), where z_f sees the whole clip in both directions.
        if c.dynamic_encoder == "causal":
            self.dynamic_lstm = nn.LSTM(c.frame_dim, c.hidden_dim, batch_first=True)
            self.dynamic_head = GaussianHead(c.hidden_dim, c.dynamic_dim)
        else:
            self.dynamic_lstm = None
            self.dynamic_head = nn.Sequential(
                nn.Linear(c.frame_dim, c.hidden_dim),
                nn.LeakyReLU(0.2),
                GaussianHead(c.hidden_dim, c.dynamic_dim),
            )
        self.prior = LSTMPrior(c.dynamic_dim, c.hidden_dim)
        self.dfp_head = mlp(c.dynamic_dim, c.hidden_dim, c.dfp_classes) if c.dfp_weight > 0 else None
        labelled = c.supervised_weight > 0  # the ground-truth ablation's heads, none without its weight
        self.static_label_heads = label_heads(
            c.static_dim, c.hidden_dim, c.static_classes if labelled else {}
        )
        self.dynamic_label_heads = label_heads(
            c.dynamic_dim, c.hidden_dim, c.dynamic_classes if labelled else {}
        )
        self.dynamic_regression_heads = label_heads(
            c.dynamic_dim, c.hidden_dim, c.dynamic_regression if labelled else {}
        )

    # --- inference network (encode_static: BidirectionalStaticVAE) ---------------------------------
    def encode_dynamic(self, features: Tensor) -> Gaussian:
        if self.dynamic_lstm is None:
            return self.dynamic_head(features)  # q(z_t | x_t), (B, T, D_z)
        out, _ = self.dynamic_lstm(features)  # (B, T, H)
        return self.dynamic_head(out)

    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        features = self.frame_encoder(x)  # (B, T, D_h)
        return self.encode_static(features), self.encode_dynamic(features)

    # --- generative network (decode, sample_static: StaticDynamicVAE) ------------------------------
    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        """z_1:T from the learned prior (B, T, D_z); `static` is unused (p(z) does not depend on z_f), and
        taken so every family samples through one call."""
        return self.prior.sample(batch, steps, like)

    def forward(self, x: Tensor) -> S3VAEOutput:
        features = self.frame_encoder(x)  # (B, T, D_h)
        static = self.encode_static(features)
        if self.training and self.config.color_blind_dynamics:
            # Colour is a static factor: a z_t that cannot see it leaves it to z_f (blocks.hide_colors).
            dynamic = self.encode_dynamic(self.frame_encoder(hide_colors(x)))
        else:
            dynamic = self.encode_dynamic(features)
        static_sample = static.rsample()  # (B, D_f)
        dynamic_sample = dynamic.rsample()  # (B, T, D_z)
        return S3VAEOutput(
            features=features,
            static=static,
            dynamic=dynamic,
            static_sample=static_sample,
            dynamic_sample=dynamic_sample,
            dynamic_prior=self.prior(dynamic_sample),
            recon=self.decode(static_sample, dynamic_sample),
        )

    # --- objective ---------------------------------------------------------------------------------
    def loss(
        self,
        x: Tensor,
        out: S3VAEOutput,
        targets: dict[str, Tensor],
        dataset_size: int,
    ) -> dict[str, Tensor]:
        """Negative ELBO (Eq. 5) plus the weighted regularisers; every term is per clip, averaged over B.

        `targets` holds the L_DFP target (`flow_topk` (B, T, k) cell indices, `silence` (B, T) 0/1, or
        `distances` (B, T, 3) with `face_found` (B, T)) and, for the ground-truth heads, one (B,) int64
        class tensor or (B, classes) class distribution per labelled head (an order-free group such as
        SMMNIST's two digits is a distribution) and one standardised (B, T, ...) tensor per regressed state.
        The likelihood of pixels (or feature values) is the config's (`models.blocks.pixel_nll`).
        """
        c = self.config
        B, T = x.shape[:2]
        terms = elbo_terms(x, out, c.likelihood, c.pixel_sigma)
        kl = c.kl_static_weight * terms["kl_static"] + c.kl_dynamic_weight * terms["kl_dynamic"]
        total = terms["recon"] + kl
        # Each term joins the total where it is computed: another order of building the graph can change the
        # gradients' last bits.
        if c.swap_weight > 0:
            terms["swap"] = swap_consistency(self, out)
            total = total + c.swap_weight * terms["swap"]
        if c.scc_weight > 0:
            terms["scc"] = static_consistency(self.encode_static, out, c.scc_margin)
            total = total + c.scc_weight * terms["scc"]
        if c.dfp_weight > 0:
            terms["dfp"] = dynamic_factor_prediction(self.dfp_head, out, targets, c)
            total = total + c.dfp_weight * terms["dfp"]
        if c.mi_weight > 0:
            terms["mi"] = mutual_information(
                out.static, out.static_sample, out.dynamic, out.dynamic_sample, dataset_size, c.mi_estimator
            )
            total = total + c.mi_weight * terms["mi"]
        if c.supervised_weight > 0:
            terms["supervised"] = supervised_loss(
                out, targets, self.static_label_heads, self.dynamic_label_heads, self.dynamic_regression_heads
            )
            total = total + c.supervised_weight * terms["supervised"]
        terms["loss"] = total
        return terms
