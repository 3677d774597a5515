"""Building blocks shared by the sequential models: Gaussians, frame encoders/decoders (conv for images, a
per-frame MLP for feature vectors), LSTM prior, pixel likelihoods, and the base classes holding what the VAE
families share: `StaticDynamicVAE` (p(z_f) and the decoding of [z_f, z_t], S3VAE, DSVAE and Unordered) and
`BidirectionalStaticVAE` (the frame codec and q(z_f | x_1:T), S3VAE and DSVAE).

Frames are images (conv trunk, video) or feature vectors (MLP, audio spectra); `frame_codec` picks the pair.

Shape vocabulary: B batch, T time, C channels, H height, W width, D feature vector, D_f static latent,
D_z dynamic latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Gaussian:
    """A diagonal Gaussian given by its mean and log-variance (any leading shape)."""

    mean: Tensor
    logvar: Tensor

    def rsample(self) -> Tensor:
        return self.mean + torch.randn_like(self.mean) * torch.exp(0.5 * self.logvar)

    def log_prob(self, x: Tensor) -> Tensor:
        """Elementwise log density (no sum over dimensions)."""
        return -0.5 * (LOG_2PI + self.logvar + (x - self.mean) ** 2 * torch.exp(-self.logvar))

    def kl(self, other: Gaussian) -> Tensor:
        """Elementwise KL(self || other) in closed form."""
        var_ratio = torch.exp(self.logvar - other.logvar)
        mean_term = (self.mean - other.mean) ** 2 * torch.exp(-other.logvar)
        return 0.5 * (var_ratio + mean_term - 1.0 - (self.logvar - other.logvar))

    @staticmethod
    def standard_like(x: Tensor) -> Gaussian:
        zeros = torch.zeros_like(x)
        return Gaussian(zeros, zeros)


class GaussianHead(nn.Module):
    """Linear map to the mean and log-variance of a diagonal Gaussian; with `leaky`, both go through a
    LeakyReLU(0.2), as S3VAE's authors' z_f heads (their `LinearUnit`: ODE-RL 0d4c701 models/DS_VAE.py:27-39,
    1009-1010)."""

    def __init__(self, in_dim: int, out_dim: int, leaky: bool = False):
        super().__init__()
        self.proj = (
            nn.Sequential(nn.Linear(in_dim, 2 * out_dim), nn.LeakyReLU(0.2))
            if leaky
            else nn.Linear(in_dim, 2 * out_dim)
        )

    def forward(self, h: Tensor) -> Gaussian:
        mean, logvar = self.proj(h).float().chunk(2, dim=-1)
        # Bounded log-variance keeps early bf16 steps from overflowing exp().
        return Gaussian(mean, logvar.clamp(-10.0, 10.0))


def _down(c_in: int, c_out: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


def conv_trunk(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    """Strided 4x4 convs, each halving the side: (N, C, H, W) -> (N, channels[-1], H / 2**k, W / 2**k)."""
    widths = (in_channels, *channels)
    return nn.Sequential(*[_down(a, b, norm=i > 0) for i, (a, b) in enumerate(pairwise(widths))])


def final_side(image_size: int, channels: tuple[int, ...]) -> int:
    """Side of conv_trunk's output map; the image side must be divisible by 2**len(channels)."""
    final = image_size // 2 ** len(channels)
    if final < 1 or final * 2 ** len(channels) != image_size:
        raise ValueError(f"image_size {image_size} is not divisible by 2**{len(channels)} (conv_channels)")
    return final


class FrameEncoder(nn.Module):
    """DCGAN-style conv trunk applied to every frame independently: (B, T, C, H, W) -> (B, T, D)."""

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, ...], out_dim: int):
        super().__init__()
        final = final_side(image_size, channels)
        self.convs = conv_trunk(in_channels, channels)
        self.proj = nn.Sequential(
            nn.Linear(channels[-1] * final * final, out_dim), nn.LeakyReLU(0.2, inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        frames = x.reshape(B * T, C, H, W).contiguous(memory_format=torch.channels_last)
        h = self.convs(frames)  # (B*T, C', H', W')
        return self.proj(h.flatten(1)).view(B, T, -1)  # (B, T, D)


class FrameDecoder(nn.Module):
    """Mirror of FrameEncoder: (B, T, D) -> per-pixel means in [0, 1], (B, T, C, H, W)."""

    def __init__(self, in_dim: int, out_channels: int, image_size: int, channels: tuple[int, ...]):
        super().__init__()
        self.start = image_size // 2 ** len(channels)
        widths = tuple(reversed(channels))
        self.widths = widths
        self.proj = nn.Sequential(
            nn.Linear(in_dim, widths[0] * self.start**2), nn.LeakyReLU(0.2, inplace=True)
        )
        ups = [_up(a, b) for a, b in pairwise(widths)]
        last = nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1)
        self.deconvs = nn.Sequential(*ups, last)

    def forward(self, latent: Tensor) -> Tensor:
        B, T, D = latent.shape
        h = self.proj(latent.reshape(B * T, D)).view(B * T, self.widths[0], self.start, self.start)
        h = h.contiguous(memory_format=torch.channels_last)
        x = torch.sigmoid(self.deconvs(h).float())  # (B*T, C, H, W)
        return x.view(B, T, *x.shape[1:])


def _leaky_linears(*widths: int) -> list[nn.Module]:
    """Linear layers through `widths`, each followed by a LeakyReLU(0.2)."""
    return [
        layer for a, b in pairwise(widths) for layer in (nn.Linear(a, b), nn.LeakyReLU(0.2, inplace=True))
    ]


class VectorFrameEncoder(nn.Module):
    """Two-layer MLP applied to every feature frame (a spectrum, a filter bank): (B, T, D) -> (B, T, D_h)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(*_leaky_linears(in_dim, out_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, T, D_h)


class VectorFrameDecoder(nn.Module):
    """Mirror of VectorFrameEncoder: (B, T, D_latent) -> feature means (B, T, D), unbounded (standardised
    log spectra are real-valued, so no sigmoid)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            *_leaky_linears(in_dim, hidden_dim, hidden_dim), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, latent: Tensor) -> Tensor:
        return self.net(latent).float()  # (B, T, D)


def frame_codec(
    kind: str,
    *,
    latent_dim: int,
    frame_dim: int,
    in_channels: int = 3,
    image_size: int = 64,
    conv_channels: tuple[int, ...] = (),
    feature_dim: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """The frame encoder (frames -> (B, T, frame_dim)) and decoder (latents -> frames) of one frame kind:
    "image" (B, T, C, H, W) through conv trunks, or "vector" (B, T, D) through MLPs."""
    if kind == "image":
        return (
            FrameEncoder(in_channels, image_size, conv_channels, frame_dim),
            FrameDecoder(latent_dim, in_channels, image_size, conv_channels),
        )
    if kind == "vector":
        if feature_dim < 1:
            raise ValueError("frame_kind 'vector' needs feature_dim, the size of each feature frame")
        return VectorFrameEncoder(feature_dim, frame_dim), VectorFrameDecoder(
            latent_dim, frame_dim, feature_dim
        )
    raise ValueError(f"unknown frame kind '{kind}': use 'image' or 'vector'")


class LSTMPrior(nn.Module):
    """Learned prior p(z_t | z_<t): an LSTM of `layers` layers over the previous latents, z_0 = 0 (S3VAE
    Eq. 2; the authors' has two: ODE-RL 0d4c701 models/DS_VAE.py:999-1000)."""

    def __init__(self, z_dim: int, hidden_dim: int, layers: int = 1):
        super().__init__()
        self.z_dim = z_dim
        self.lstm = nn.LSTM(z_dim, hidden_dim, num_layers=layers, batch_first=True)
        self.head = GaussianHead(hidden_dim, z_dim)

    def forward(self, z: Tensor) -> Gaussian:
        """Teacher-forced on given latents z (B, T, D_z): returns p(z_t | z_<t) for every t."""
        shifted = F.pad(z[:, :-1], (0, 0, 1, 0))  # (B, T, D_z): z_0 = 0, z_1, ..., z_{T-1}
        h, _ = self.lstm(shifted)  # (B, T, hidden)
        return self.head(h)

    @torch.no_grad()
    def sample(self, batch: int, steps: int, like: Tensor, context: Tensor | None = None) -> Tensor:
        """Roll the prior out for `steps` steps, feeding back its own samples: (B, T, D_z).

        With `context` z_1:t (B, t, D_z) the roll-out continues after it (imputation): the samples are
        z_t+1:t+steps, drawn from p(z_t+1 | z_<=t) onwards.
        """
        z = like.new_zeros(batch, 1, self.z_dim)
        state = None
        if context is not None:
            _, state = self.lstm(torch.cat([z, context[:, :-1]], dim=1))  # read z_0 = 0, z_1, ..., z_t-1
            z = context[:, -1:]  # (B, 1, D_z)
        samples = []
        for _ in range(steps):
            h, state = self.lstm(z, state)
            z = self.head(h).rsample().to(like.dtype)  # (B, 1, D_z)
            samples.append(z)
        return torch.cat(samples, dim=1)


def hide_colors(x: Tensor) -> Tensor:
    """The clips x (B, T, C, H, W) in [0, 1] with their colours hidden and their shapes and motion kept: the
    luminance, put through a random gamma curve (0.4 to 2.5, log-uniform) and a random gain (0.6 to 1.4),
    one draw per clip for all its frames, in every channel. Black stays black, edges stay edges, and no
    pixel value tells which colour it had."""
    B, T, C = x.shape[:3]
    luminance = (
        x.mean(dim=2, keepdim=True)
        if C != 3
        else (x * x.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(2, keepdim=True)
    )
    gamma = torch.exp(torch.empty(B, 1, 1, 1, 1, device=x.device).uniform_(math.log(0.4), math.log(2.5)))
    gain = torch.empty(B, 1, 1, 1, 1, device=x.device).uniform_(0.6, 1.4)
    return (luminance.clamp_min(0.0) ** gamma * gain).clamp(0.0, 1.0).expand(B, T, C, *x.shape[3:])


def bidirectional_summary(out: Tensor) -> Tensor:
    """Clip summary from a bidirectional LSTM's outputs (B, T, 2H): the forward pass's last step and the
    backward pass's first step, the two states that have read every frame. Returns (B, 2H)."""
    H = out.shape[-1] // 2
    return torch.cat([out[:, -1, :H], out[:, 0, H:]], dim=-1)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The two-layer head used for every auxiliary prediction."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


WEIGHT_INITS = ("pytorch", "normal")


def init_weights(model: nn.Module, kind: str) -> None:
    """ "pytorch" keeps PyTorch's default initialisation; "normal" is S3VAE's authors' (ODE-RL 0d4c701
    utils.py:378-389, applied to the whole model at train_DS_VAE_sprite.py:313): the weights of every Conv2d
    and Linear from N(0, 0.01) with zero biases, BatchNorm2d at weight 1 and bias 0; transposed convs,
    recurrent layers and 1-d batch norms keep PyTorch's."""
    if kind not in WEIGHT_INITS:
        raise ValueError(f"unknown weight_init '{kind}': use one of {WEIGHT_INITS}")
    if kind == "pytorch":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


LIKELIHOODS = ("gaussian", "gaussian_calibrated", "bernoulli")


def pixel_nll(recon: Tensor, x: Tensor, likelihood: str, sigma: float = math.sqrt(0.5)) -> Tensor:
    """Negative log-likelihood of frames x under means `recon`, summed over every pixel (or feature value)
    and averaged over the batch (the first axis); constants without a gradient are dropped.

    - "gaussian": fixed standard deviation `sigma`, sum (x - mean)^2 / (2 sigma^2). The default sigma^2 = 1/2
      is the summed squared error S3VAE and DSVAE train with. On dark, sparse frames it is a weak
      likelihood: a pixel off by 0.1 costs 0.01 nats, so the KL terms win and small details (Sprites' skin
      colour, SMMNIST's digit shapes) are averaged away.
    - "gaussian_calibrated": one sigma shared by every pixel, set on every batch to its maximum-likelihood
      value sigma^2 = mean squared error (the "optimal sigma" of Rybkin, Daniilidis, Levine 2021, the
      analytic optimum of a learned sigma): D/2 log(MSE) per clip of D values. The weight of the
      reconstruction then grows as it improves, without a tuned constant.
    - "bernoulli": binary cross-entropy on means in [0, 1], for binary frames (bouncing balls, Helminger
      et al.). Written out because autocast refuses F.binary_cross_entropy on CUDA.
    """
    B = x.shape[0]
    if likelihood == "gaussian":
        return F.mse_loss(recon, x, reduction="sum") / (2 * sigma**2 * B)
    if likelihood == "gaussian_calibrated":
        values = x[0].numel()
        # the floor (sigma >= e^-6, as Rybkin et al. clip it) keeps a perfect batch from diverging
        mse = F.mse_loss(recon.float(), x.float()).clamp_min(math.exp(-12))
        return 0.5 * values * (torch.log(mse) + 1.0)
    if likelihood == "bernoulli":
        p = recon.float().clamp(1e-6, 1 - 1e-6)
        return -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum() / B
    raise ValueError(f"unknown likelihood '{likelihood}': use one of {LIKELIHOODS}")


def elbo_terms(x: Tensor, out, likelihood: str, sigma: float = math.sqrt(0.5)) -> dict[str, Tensor]:
    """The negative ELBO of a static + dynamic model, term by term, per clip and averaged over B: the frames'
    likelihood (`pixel_nll`), KL(q(z_f | x) || N(0, I)) and KL(q(z_1:T | x) || p(z_1:T)). `out` carries
    `recon`, `static`, `dynamic` and `dynamic_prior` (the prior evaluated at the posterior sample)."""
    B = x.shape[0]
    return {
        "recon": pixel_nll(out.recon, x, likelihood, sigma),
        "kl_static": out.static.kl(Gaussian.standard_like(out.static.mean)).sum() / B,
        "kl_dynamic": out.dynamic.kl(out.dynamic_prior).sum() / B,
    }


class StaticDynamicVAE(nn.Module):
    """The generative side S3VAE, DSVAE and Unordered share: z_f ~ p(z_f) = N(0, I), one per clip, and a frame
    decoder that renders frame t from [z_f, latent_t]. A subclass sets `config` (its `static_dim` is D_f) and
    `decoder`, (B, T, D_f + D) -> frames."""

    config: Any
    decoder: nn.Module

    def frame_latents(self, dynamic: Tensor) -> Tensor:
        """The decoder's per-frame latents (B, T, D) for z_1:T (B, T, D_z): z_t itself, unless the family
        unrolls deterministic dynamics from it (DSVAE's lstm_*)."""
        return dynamic

    def decode(self, static: Tensor, dynamic: Tensor) -> Tensor:
        """z_f (B, D_f) and z_1:T (B, T, D_z) -> frames (B, T, C, H, W), or feature frames (B, T, D)."""
        per_frame = self.frame_latents(dynamic)  # (B, T, D)
        B, T, _ = per_frame.shape
        latent = torch.cat([static[:, None].expand(B, T, -1), per_frame], dim=-1)  # (B, T, D_f + D)
        return self.decoder(latent.to(dynamic.dtype))

    def sample_static(self, batch: int, like: Tensor) -> Tensor:
        return torch.randn(batch, self.config.static_dim, device=like.device, dtype=like.dtype)  # (B, D_f)


class BidirectionalStaticVAE(StaticDynamicVAE):
    """A StaticDynamicVAE with the frame path S3VAE and DSVAE share: the frame codec of `config.frame_kind`
    and q(z_f | x_1:T) from a bidirectional LSTM over the frame features. `frame_latent_dim` is D, the size
    of the decoder's per-frame latent beside z_f."""

    def __init__(self, config, frame_latent_dim: int):
        super().__init__()
        c = config
        self.config = c
        self.frame_encoder, self.decoder = frame_codec(
            c.frame_kind,
            latent_dim=c.static_dim + frame_latent_dim,
            frame_dim=c.frame_dim,
            in_channels=c.in_channels,
            image_size=c.image_size,
            conv_channels=c.conv_channels,
            feature_dim=c.feature_dim,
        )
        self.static_lstm = nn.LSTM(c.frame_dim, c.hidden_dim, batch_first=True, bidirectional=True)
        self.static_head = GaussianHead(2 * c.hidden_dim, c.static_dim)

    def encode_static(self, features: Tensor) -> Gaussian:
        """q(z_f | x_1:T) (B, D_f) from the frame features (B, T, D_h)."""
        out, _ = self.static_lstm(features)  # (B, T, 2H)
        return self.static_head(bidirectional_summary(out))
