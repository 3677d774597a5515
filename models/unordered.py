"""Disentangled dynamic representations from unordered data (Helminger, Abrevaya, Schwab; 2018).

The frames of a clip are treated as a set: a static latent f for the clip and an independent z_t per frame,
p(f) = N(0, I), a learned prior p(z_t | f) and a Bernoulli likelihood p(x_t | f, z_t). Nothing uses the
frames' order, so the model is trained on frames drawn without it.

- q(f | x): from N = 3 frames drawn at random from the clip. A conv trunk shared by the frames, a conv over
  each concatenated pair of frame feature maps, a conv over the concatenated pair features, then dense
  layers to the mean and log-variance of f.
- q(z_t | f, x_t) and p(z_t | f): MLPs; z is 2-dimensional by default, as in the paper.

Table 1 uses the S3VAE protocol: z_1:T from a clip's frames with f from p(f), and f from the clip with
z_t ~ p(z_t | f). The second needs f: `sample_dynamic(..., static=f)` draws from p(z | f) (without f, from
p(z | f) with f ~ p(f)).

Shapes: B batch, T time, N frames seen by q(f), C, H, W frame, D_h frame feature, D_f static latent,
D_z dynamic latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch
from torch import Tensor, nn

from models.blocks import (
    FrameDecoder,
    FrameEncoder,
    Gaussian,
    GaussianHead,
    StaticDynamicVAE,
    conv_trunk,
    elbo_terms,
    final_side,
)


@dataclass(frozen=True)
class UnorderedConfig:
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (64, 128, 256, 512)
    pair_channels: int = 256  # width of the pair conv and the set conv of q(f | x)
    frame_dim: int = 512  # D_h, per-frame feature fed to q(z_t | f, x_t)
    hidden_dim: int = 256  # width of the dense layers and the MLPs
    static_dim: int = 256  # D_f
    dynamic_dim: int = 2  # D_z, the paper's default
    n_frames: int = 3  # N frames q(f | x) sees
    likelihood: str = "bernoulli"  # one of models.blocks.LIKELIHOODS; a Gaussian for colour frames
    pixel_sigma: float = math.sqrt(0.5)  # "gaussian" only


@dataclass(frozen=True)
class UnorderedOutput:
    static: Gaussian  # q(f | x), (B, D_f)
    dynamic: Gaussian  # q(z_t | f, x_t), (B, T, D_z)
    static_sample: Tensor  # (B, D_f)
    dynamic_sample: Tensor  # (B, T, D_z)
    dynamic_prior: Gaussian  # p(z_t | f) at static_sample, (B, 1, D_z), the same for every frame
    recon: Tensor  # (B, T, C, H, W), pixel means in [0, 1]


def gaussian_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """One hidden layer to the mean and log-variance of a diagonal Gaussian."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), GaussianHead(hidden_dim, out_dim)
    )


class SetEncoder(nn.Module):
    """q(f | x_i, x_j, x_k): (B, N, C, H, W) -> Gaussian (B, D_f), through per-pair and set convs."""

    def __init__(self, c: UnorderedConfig):
        super().__init__()
        final = final_side(c.image_size, c.conv_channels)
        self.trunk = conv_trunk(c.in_channels, c.conv_channels)
        self.pairs = list(combinations(range(c.n_frames), 2))
        width = c.conv_channels[-1]
        self.pair_conv = nn.Sequential(
            nn.Conv2d(2 * width, c.pair_channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)
        )
        self.set_conv = nn.Sequential(
            nn.Conv2d(len(self.pairs) * c.pair_channels, c.pair_channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.dense = nn.Sequential(
            nn.Linear(c.pair_channels * final * final, c.hidden_dim), nn.LeakyReLU(0.2, inplace=True)
        )
        self.head = GaussianHead(c.hidden_dim, c.static_dim)

    def forward(self, frames: Tensor) -> Gaussian:
        B, N, C, H, W = frames.shape
        h = self.trunk(frames.reshape(B * N, C, H, W).contiguous(memory_format=torch.channels_last))
        h = h.view(B, N, *h.shape[1:])  # (B, N, C', H', W')
        pairs = [
            self.pair_conv(torch.cat([h[:, i], h[:, j]], dim=1)) for i, j in self.pairs
        ]  # P x (B, C'', ..)
        s = self.set_conv(torch.cat(pairs, dim=1))  # (B, C'', H', W')
        return self.head(self.dense(s.flatten(1)))  # (B, D_f)


class Unordered(StaticDynamicVAE):
    def __init__(self, config: UnorderedConfig):
        super().__init__()
        c = config
        self.config = c
        self.static_encoder = SetEncoder(c)
        self.frame_encoder = FrameEncoder(c.in_channels, c.image_size, c.conv_channels, c.frame_dim)
        self.dynamic_encoder = gaussian_mlp(c.frame_dim + c.static_dim, c.hidden_dim, c.dynamic_dim)
        self.prior = gaussian_mlp(c.static_dim, c.hidden_dim, c.dynamic_dim)
        self.decoder = FrameDecoder(
            c.static_dim + c.dynamic_dim, c.in_channels, c.image_size, c.conv_channels
        )

    # --- inference network -------------------------------------------------------------------------
    def encode_static(self, x: Tensor) -> Gaussian:
        """q(f | x) from N frames of each clip, drawn at random without replacement."""
        B, T = x.shape[:2]
        N = self.config.n_frames
        if T < N:
            raise ValueError(f"clips of {T} frames: q(f | x) needs at least n_frames = {N}")
        chosen = torch.rand(B, T, device=x.device).argsort(dim=1)[:, :N]  # (B, N)
        return self.static_encoder(x[torch.arange(B, device=x.device)[:, None], chosen])

    def encode_dynamic(self, features: Tensor, static: Tensor) -> Gaussian:
        B, T, _ = features.shape
        return self.dynamic_encoder(torch.cat([features, static[:, None].expand(B, T, -1)], dim=-1))

    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        """q(f | x) (B, D_f) and q(z_t | f, x_t) (B, T, D_z), the latter at f's mean."""
        static = self.encode_static(x)
        return static, self.encode_dynamic(self.frame_encoder(x), static.mean)

    # --- generative network (decode, sample_static: StaticDynamicVAE) ------------------------------
    @torch.no_grad()
    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        """z_t ~ p(z_t | f) independently for `steps` frames: (B, T, D_z); f ~ p(f) unless given (B, D_f)."""
        f = self.sample_static(batch, like) if static is None else static
        prior = self.prior(f.float())  # (B, D_z)
        noise = torch.randn(batch, steps, self.config.dynamic_dim, device=like.device)
        return (prior.mean[:, None] + noise * torch.exp(0.5 * prior.logvar[:, None])).to(like.dtype)

    def forward(self, x: Tensor) -> UnorderedOutput:
        static = self.encode_static(x)
        static_sample = static.rsample()  # (B, D_f)
        dynamic = self.encode_dynamic(self.frame_encoder(x), static_sample)
        dynamic_sample = dynamic.rsample()  # (B, T, D_z)
        prior = self.prior(static_sample)  # (B, D_z)
        return UnorderedOutput(
            static=static,
            dynamic=dynamic,
            static_sample=static_sample,
            dynamic_sample=dynamic_sample,
            dynamic_prior=Gaussian(prior.mean[:, None], prior.logvar[:, None]),
            recon=self.decode(static_sample, dynamic_sample),
        )

    # --- objective ---------------------------------------------------------------------------------
    def loss(
        self, x: Tensor, out: UnorderedOutput, targets: dict[str, Tensor], dataset_size: int
    ) -> dict[str, Tensor]:
        """Negative ELBO, per clip and averaged over B; `targets` and `dataset_size` are unused (the
        signature the training loop calls every family with)."""
        terms = elbo_terms(x, out, self.config.likelihood, self.config.pixel_sigma)
        terms["loss"] = terms["recon"] + terms["kl_static"] + terms["kl_dynamic"]
        return terms
