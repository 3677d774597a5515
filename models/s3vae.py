"""S3VAE: self-supervised sequential VAE (Zhu, Min, Kadav, Graf; CVPR 2020).

A sequence x_1:T is encoded into one static latent z_f (from the whole clip) and dynamic latents z_1:T
(z_t from a causal LSTM, q(z_t | x_<=t) as Eq. 4 writes it; or, as the authors' code does, from a tanh RNN
over the outputs of the bidirectional LSTM that also gives z_f, so that z_t reads the whole clip:
`dynamic_encoder="shared"`). The decoder renders frame t from [z_f, z_t]. Priors:
p(z_f) = N(0, I) and a learned LSTM prior p(z_t | z_<t). Training maximises the ELBO (Eq. 5) plus three
regularisers, each switched off by a zero weight:

- L_SCC (Eq. 6, `static_consistency`): triplet loss on z_f; positive = the same clip shuffled in time (one
  order for the batch, or each clip its own as the authors), negative = another clip.
- L_DFP (`dynamic_factor_prediction`): heads on z_t predict the dynamic pseudo labels: the top-k
  optical-flow cells of each frame (video, `dfp_target="flow_topk"`), or whether each frame is silent (audio,
  section 4.2, `dfp_target="silence"`), both per-frame binary targets scored by a summed binary
  cross-entropy; the authors' labels, each moving flow cell's direction in 8 bins and which cells move
  (`"flow_direction"`, `direction_prediction`: their heads and averaged losses); or, on faces (section 4.2),
  the three landmark distances of each frame, two eyelid gaps and the inner-lip gap
  (`"landmark_distances"`), regressed by a summed squared error.
- L_MI (Eq. 7-8, `mutual_information`): a minibatch estimate of I(z_f; z_t) per frame, penalised: summed
  over frames, or as the authors, each frame's and clip's estimate cut at 0 and averaged.

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
    bidirectional_summary,
    elbo_terms,
    hide_colors,
    init_weights,
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
    # q(z_t | x_<=t) from a causal LSTM (the paper), q(z_t | x_t) from frame t alone ("frame", DSVAE's
    # factorised q, beyond the paper), or "shared": the authors' one bidirectional LSTM for z_f and z_t, z_t
    # from a tanh RNN over its outputs (ODE-RL 0d4c701 models/DS_VAE.py:1008-1015, 1038-1057)
    dynamic_encoder: str = "causal"
    prior_layers: int = 1  # LSTM layers of p(z_t | z_<t); the authors' has 2 (models/DS_VAE.py:999-1000)
    weight_init: str = "pytorch"  # or "normal", the authors' N(0, 0.01) (models.blocks.init_weights)
    scc_weight: float = 0.0
    scc_margin: float = 1.0
    scc_shuffle: str = "batch"  # the positive's frame order: one for the batch, or "clip": each its own
    dfp_weight: float = 0.0
    # "flow_topk": (B, T, k) cell indices; "flow_direction": (B, T, cells) direction bins, -1 where still;
    # "silence": (B, T) 0/1 per frame; "landmark_distances": (B, T, 3)
    dfp_target: str = "flow_topk"
    dfp_classes: int = 0  # flow_topk: grid cells G * G; flow_direction: cells; 1 for silence; 3 distances
    # landmark_distances only: the training split's mean and std of each distance, so that each regressed
    # distance weighs like a unit-variance target (raw, they are 0.01 to 0.1 of the inter-ocular distance)
    dfp_target_mean: tuple[float, ...] = ()
    dfp_target_std: tuple[float, ...] = ()
    mi_weight: float = 0.0
    mi_estimator: str = "mws"  # "mws" as S3VAE Eq. 8, or "mss" (stratified, calibrated to 0 when independent)
    # "frame_sum": per-frame estimates averaged over clips, summed over frames; "relu_mean": the authors',
    # each frame's and clip's estimate cut at 0, averaged over both (train_DS_VAE_sprite.py:215)
    mi_form: str = "frame_sum"
    supervised_weight: float = 0.0
    static_classes: dict[str, int] = field(default_factory=dict)  # label head -> classes, heads on z_f
    dynamic_classes: dict[str, int] = field(default_factory=dict)  # label head -> classes, heads on z_t
    dynamic_regression: dict[str, int] = field(default_factory=dict)  # per-frame state -> size, heads on z_t

    def __post_init__(self) -> None:
        for name, allowed in (
            ("dynamic_encoder", ("causal", "frame", "shared")),
            ("dfp_target", ("flow_topk", "flow_direction", "silence", "landmark_distances")),
            ("scc_shuffle", ("batch", "clip")),
            ("mi_form", ("frame_sum", "relu_mean")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"S3VAEConfig.{name} = '{getattr(self, name)}': use one of {allowed}")


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
    form: str = "frame_sum",
) -> Tensor:
    """Minibatch estimate of L_MI from I(z_f; z_t) (S3VAE Eq. 7-8), one term per frame: "frame_sum" sums the
    frames' estimates (each averaged over the clips), "relu_mean" cuts each frame's and clip's estimate at 0
    and averages them all, as the authors' code (ODE-RL 0d4c701 train_DS_VAE_sprite.py:215).

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
    per_frame = log_joint - log_static - log_dynamic  # (T, M)
    if form == "relu_mean":
        return F.relu(per_frame).mean()
    if form == "frame_sum":
        return per_frame.mean(dim=-1).sum()
    raise ValueError(f"unknown mi_form '{form}': use 'frame_sum' or 'relu_mean'")


def static_consistency(encode_static, out: S3VAEOutput, margin: float, shuffle: str = "batch") -> Tensor:
    """L_SCC (Eq. 6), a triplet loss on the means of q(z_f): the anchor is the clip, the positive the same
    clip shuffled in time (`shuffle`: one frame order for the whole batch, or "clip": each clip its own, as
    the authors' data loader gives each its shuffled copy), the negative another clip of the batch.
    `encode_static` maps frame features (B, T, D_h) to q(z_f)."""
    B, T, D = out.features.shape
    device = out.features.device
    # The shuffled clip's frame features are a permutation of the anchor's: no second conv pass.
    if shuffle == "clip":
        order = torch.argsort(torch.rand(B, T, device=device), dim=1)  # (B, T): a permutation per clip
        shuffled = out.features.gather(1, order[..., None].expand(B, T, D))
    elif shuffle == "batch":
        shuffled = out.features[:, torch.randperm(T, device=device)]
    else:
        raise ValueError(f"unknown scc_shuffle '{shuffle}': use 'batch' or 'clip'")
    positive = encode_static(shuffled).mean  # (B, D_f)
    negative = out.static.mean.roll(1, dims=0)  # (B, D_f): another clip of the batch
    return F.triplet_margin_loss(out.static.mean, positive, negative, margin=margin)


class DirectionHeads(nn.Module):
    """The authors' L_DFP heads on z_t (ODE-RL 0d4c701 models/DS_VAE.py:1017-1036): per flow cell a head over
    the 8 direction bins, and one head over the cells that says which move; each Linear(D_z, 2 D_z),
    LeakyReLU(0.2), Linear."""

    def __init__(self, z_dim: int, cells: int, bins: int = 8):
        super().__init__()

        def head(out_dim: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(z_dim, 2 * z_dim), nn.LeakyReLU(0.2), nn.Linear(2 * z_dim, out_dim)
            )

        self.directions = nn.ModuleList([head(bins) for _ in range(cells)])
        self.moving = head(cells)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z_t (B, T, D_z) -> direction logits (B, T, cells, bins), moving-cell logits (B, T, cells)."""
        return torch.stack([h(z) for h in self.directions], dim=-2), self.moving(z)


def direction_prediction(heads: DirectionHeads, out: S3VAEOutput, targets: dict[str, Tensor]) -> Tensor:
    """The authors' L_DFP (ODE-RL 0d4c701 train_DS_VAE_sprite.py:173-183): the cross-entropy of each moving
    cell's direction, averaged over every moving cell of every frame, plus the binary cross-entropy of which
    cells move, averaged over the cells of frames 2 to T (no flow enters frame 1). `flow_direction`
    (B, T, cells) holds the bins, -1 where a cell does not move."""
    directions = targets["flow_direction"].long()  # (B, T, cells)
    logits, moving_logits = heads(out.dynamic_sample)  # (B, T, cells, 8), (B, T, cells)
    moving = (directions >= 0).float()  # (B, T, cells)
    area = F.binary_cross_entropy_with_logits(moving_logits[:, 1:].float(), moving[:, 1:])
    # The mean over the moving entries as a weighted sum, not a boolean index: no host sync on a GPU, and a
    # batch of still clips gives 0
    every = F.cross_entropy(logits.flatten(0, 2).float(), directions.clamp_min(0).flatten(), reduction="none")
    return (every * moving.flatten()).sum() / moving.sum().clamp_min(1.0) + area


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
    frames where a face was found (`distances` (B, T, 3), `face_found` (B, T)); the authors' direction labels
    are scored as their code does (`direction_prediction`)."""
    if c.dfp_target == "flow_direction":
        return direction_prediction(head, out, targets)
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


def dfp_head(c: S3VAEConfig) -> nn.Module:
    """L_DFP's head on z_t: the authors' direction heads, or one two-layer head over `dfp_classes`."""
    if c.dfp_target == "flow_direction":
        return DirectionHeads(c.dynamic_dim, c.dfp_classes)
    return mlp(c.dynamic_dim, c.hidden_dim, c.dfp_classes)


def label_heads(in_dim: int, hidden_dim: int, outputs: dict[str, int]) -> nn.ModuleDict:
    """One `mlp` head per label, from its number of classes or the size of its regressed state."""
    return nn.ModuleDict({name: mlp(in_dim, hidden_dim, n) for name, n in outputs.items()})


class S3VAE(BidirectionalStaticVAE):
    def __init__(self, config: S3VAEConfig):
        super().__init__(config, frame_latent_dim=config.dynamic_dim)
        c = config
        self.dynamic_lstm = self.dynamic_rnn = None
        if c.dynamic_encoder == "causal":
            # z_t sees only the past (causal), where z_f sees the whole clip in both directions.
            self.dynamic_lstm = nn.LSTM(c.frame_dim, c.hidden_dim, batch_first=True)
            self.dynamic_head = GaussianHead(c.hidden_dim, c.dynamic_dim)
        elif c.dynamic_encoder == "shared":
            # The authors' q: z_f's bidirectional LSTM also feeds z_t, through a tanh RNN over all its
            # outputs (so z_t reads the whole clip), and z_f's heads end in a LeakyReLU.
            self.static_head = GaussianHead(2 * c.hidden_dim, c.static_dim, leaky=True)
            self.dynamic_rnn = nn.RNN(2 * c.hidden_dim, c.hidden_dim, batch_first=True)
            self.dynamic_head = GaussianHead(c.hidden_dim, c.dynamic_dim)
        else:
            self.dynamic_head = nn.Sequential(
                nn.Linear(c.frame_dim, c.hidden_dim),
                nn.LeakyReLU(0.2),
                GaussianHead(c.hidden_dim, c.dynamic_dim),
            )
        self.prior = LSTMPrior(c.dynamic_dim, c.hidden_dim, c.prior_layers)
        self.dfp_head = dfp_head(c) if c.dfp_weight > 0 else None
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
        init_weights(self, c.weight_init)

    # --- inference network (encode_static: BidirectionalStaticVAE) ---------------------------------
    def encode_dynamic(self, features: Tensor) -> Gaussian:
        if self.dynamic_rnn is not None:
            both, _ = self.static_lstm(features)  # (B, T, 2H): the one LSTM of the shared encoder
            return self._shared_dynamic(both)
        if self.dynamic_lstm is None:
            return self.dynamic_head(features)  # q(z_t | x_t), (B, T, D_z)
        out, _ = self.dynamic_lstm(features)  # (B, T, H)
        return self.dynamic_head(out)

    def _shared_dynamic(self, both: Tensor) -> Gaussian:
        h, _ = self.dynamic_rnn(both)  # (B, T, H)
        return self.dynamic_head(h)  # (B, T, D_z)

    def encode_features(self, features: Tensor) -> tuple[Gaussian, Gaussian]:
        """q(z_f | x_1:T) and q(z_1:T | x) from the frame features (B, T, D_h); the shared encoder reads
        them once for both."""
        if self.dynamic_rnn is None:
            return self.encode_static(features), self.encode_dynamic(features)
        both, _ = self.static_lstm(features)  # (B, T, 2H)
        return self.static_head(bidirectional_summary(both)), self._shared_dynamic(both)

    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        return self.encode_features(self.frame_encoder(x))

    # --- generative network (decode, sample_static: StaticDynamicVAE) ------------------------------
    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        """z_1:T from the learned prior (B, T, D_z); `static` is unused (p(z) does not depend on z_f), and
        taken so every family samples through one call."""
        return self.prior.sample(batch, steps, like)

    def forward(self, x: Tensor) -> S3VAEOutput:
        features = self.frame_encoder(x)  # (B, T, D_h)
        if self.training and self.config.color_blind_dynamics:
            # Colour is a static factor: a z_t that cannot see it leaves it to z_f (blocks.hide_colors).
            static = self.encode_static(features)
            dynamic = self.encode_dynamic(self.frame_encoder(hide_colors(x)))
        else:
            static, dynamic = self.encode_features(features)
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
        """Negative ELBO (Eq. 5) plus the weighted regularisers (`objective`)."""
        return objective(self, x, out, targets, dataset_size)


def objective(
    model: S3VAE, x: Tensor, out: S3VAEOutput, targets: dict[str, Tensor], dataset_size: int
) -> dict[str, Tensor]:
    """Negative ELBO (Eq. 5) plus the weighted regularisers; every term is per clip, averaged over B.

    `targets` holds the L_DFP target (`flow_topk` (B, T, k) cell indices, `flow_direction` (B, T, cells) bins,
    `silence` (B, T) 0/1, or `distances` (B, T, 3) with `face_found` (B, T)) and, for the ground-truth heads,
    one (B,) int64 class tensor or (B, classes) class distribution per labelled head (an order-free group
    such as SMMNIST's two digits is a distribution) and one standardised (B, T, ...) tensor per regressed
    state. The likelihood of pixels (or feature values) is the config's (`models.blocks.pixel_nll`).
    """
    c = model.config
    terms = elbo_terms(x, out, c.likelihood, c.pixel_sigma)
    kl = c.kl_static_weight * terms["kl_static"] + c.kl_dynamic_weight * terms["kl_dynamic"]
    total = terms["recon"] + kl
    # Each term joins the total where it is computed: another order of building the graph can change the
    # gradients' last bits.
    if c.swap_weight > 0:
        terms["swap"] = swap_consistency(model, out)
        total = total + c.swap_weight * terms["swap"]
    if c.scc_weight > 0:
        terms["scc"] = static_consistency(model.encode_static, out, c.scc_margin, c.scc_shuffle)
        total = total + c.scc_weight * terms["scc"]
    if c.dfp_weight > 0:
        terms["dfp"] = dynamic_factor_prediction(model.dfp_head, out, targets, c)
        total = total + c.dfp_weight * terms["dfp"]
    if c.mi_weight > 0:
        q = (out.static, out.static_sample, out.dynamic, out.dynamic_sample)
        terms["mi"] = mutual_information(*q, dataset_size, c.mi_estimator, c.mi_form)
        total = total + c.mi_weight * terms["mi"]
    if c.supervised_weight > 0:
        heads = (model.static_label_heads, model.dynamic_label_heads, model.dynamic_regression_heads)
        terms["supervised"] = supervised_loss(out, targets, *heads)
        total = total + c.supervised_weight * terms["supervised"]
    terms["loss"] = total
    return terms
