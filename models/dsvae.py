"""DSVAE: disentangled sequential autoencoder (Li & Mandt, ICML 2018).

Generative model (Eq. 1): f ~ p(f) = N(0, I), z_t ~ p(z_t | z_<t) from an LSTM prior, and frame x_t from
p(x_t | z_t, f). Two inference networks, chosen by `encoder` (section 3.2):

- "factorised": q(f | x_1:T) from a bidirectional LSTM over frame features, q(z_t | x_t) per frame;
  the model S3VAE's Table 1 compares against.
- "full": the same q(f | x_1:T) and q(z_1:T | f, x_1:T), a bidirectional LSTM over the frame
  features concatenated with f, followed by a forward RNN whose step t gives q(z_t | ...).

Section 4.3 (stochastic vs deterministic dynamics, Fig. 8) compares the stochastic model with two
deterministic baselines, chosen by `dynamics`:

- "lstm_f": one z per clip sets the initial state of a deterministic LSTM, h_0 = W z, h_t = LSTM(h_t-1).
- "lstm_c": h_0 = 0 and the LSTM reads z at every step, h_t = LSTM(h_t-1, z).

The baselines keep f and decode frame t from [f, h_t]; their z ~ N(0, I) is one vector per clip (D_z = 64 in
the paper), encoded by the bidirectional LSTM's summary (conditioned on f for "full"). So that the rest of
the workflow sees one interface (`models.interface.SequentialVAE`), `encode` repeats that z over the T
steps, (B, T, D_z), and `decode` reads step 0 and unrolls the LSTM for T steps.

Frames are images (conv trunks) or, for speech, feature vectors (`frame_kind="vector"`, MLPs).

Shapes: B batch, T time, C, H, W frame (or D feature vector), D_h frame feature, D_f static latent,
D_z dynamic latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.blocks import (
    LIKELIHOODS,
    BidirectionalStaticVAE,
    Gaussian,
    GaussianHead,
    LSTMPrior,
    bidirectional_summary,
    elbo_terms,
)

ENCODERS = ("factorised", "full")
DYNAMICS = ("stochastic", "lstm_f", "lstm_c")


@dataclass(frozen=True)
class DSVAEConfig:
    frame_kind: str = "image"  # "image" (B, T, C, H, W) or "vector" (B, T, D) speech feature frames
    feature_dim: int = 0  # D of "vector" frames (200 spectrum bins in DSVAE, or 80 log mel bands)
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (64, 128, 256, 512)
    frame_dim: int = 512  # D_h, per-frame feature fed to the encoders
    hidden_dim: int = 256  # width of the encoder LSTMs and the prior LSTM
    static_dim: int = 256  # D_f (DSVAE uses 256 on Sprites)
    dynamic_dim: int = 32  # D_z: z_t (32 on Sprites, 16 on bouncing balls), or the clip's z (64) for lstm_*
    encoder: str = "factorised"  # one of ENCODERS
    dynamics: str = "stochastic"  # one of DYNAMICS
    state_dim: int = 512  # the deterministic LSTM's state (lstm_f, lstm_c), 512 in section 4.3
    forget_bias: float = 0.0  # added to the deterministic LSTM's forget-gate bias at initialisation
    likelihood: str = "gaussian"  # one of LIKELIHOODS; "bernoulli" for binary frames (bouncing balls)
    pixel_sigma: float = math.sqrt(0.5)  # "gaussian" only: sigma^2 = 1/2 is DSVAE's summed squared error

    def __post_init__(self):
        for name, allowed in (("encoder", ENCODERS), ("dynamics", DYNAMICS), ("likelihood", LIKELIHOODS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"DSVAEConfig.{name} = '{getattr(self, name)}': use one of {allowed}")
        if self.frame_kind == "vector" and self.likelihood == "bernoulli":
            raise ValueError("DSVAEConfig: feature-vector frames are real-valued; use a gaussian likelihood")


@dataclass(frozen=True)
class DSVAEOutput:
    static: Gaussian  # q(f | x_1:T), (B, D_f)
    dynamic: Gaussian  # q(z_t | ...), (B, T, D_z); (B, 1, D_z) for the clip's single z of lstm_*
    static_sample: Tensor  # (B, D_f)
    dynamic_sample: Tensor  # (B, T, D_z)
    dynamic_prior: Gaussian  # p(z_t | z_<t) teacher-forced on dynamic_sample, or N(0, I); as `dynamic`
    recon: Tensor  # (B, T, C, H, W) pixel means in [0, 1], or (B, T, D) feature means


class DynamicEncoder(nn.Module):
    """q of the dynamic latent for every (encoder, dynamics) pair; see the module docstring."""

    def __init__(self, c: DSVAEConfig):
        super().__init__()
        self.conditioned = c.encoder == "full"
        self.per_clip = c.dynamics != "stochastic"
        in_dim = c.frame_dim + (c.static_dim if self.conditioned else 0)
        needs_context = self.conditioned or self.per_clip  # everything but q(z_t | x_t)
        self.lstm = (
            nn.LSTM(in_dim, c.hidden_dim, batch_first=True, bidirectional=True) if needs_context else None
        )
        self.rnn = (
            nn.RNN(2 * c.hidden_dim, c.hidden_dim, batch_first=True)
            if needs_context and not self.per_clip
            else None
        )
        if self.rnn is not None:
            head_in = c.hidden_dim
        elif self.lstm is not None:
            head_in = 2 * c.hidden_dim
        else:
            head_in = in_dim
        self.head = GaussianHead(head_in, c.dynamic_dim)

    def forward(self, features: Tensor, static: Tensor) -> Gaussian:
        """features (B, T, D_h), a value of f (B, D_f) -> q (B, T, D_z), or (B, 1, D_z) for one z per clip."""
        B, T, _ = features.shape
        h = torch.cat([features, static[:, None].expand(B, T, -1)], -1) if self.conditioned else features
        if self.lstm is None:
            return self.head(h)  # q(z_t | x_t)
        out, _ = self.lstm(h)  # (B, T, 2H)
        if self.per_clip:
            return self.head(bidirectional_summary(out)[:, None])  # (B, 1, D_z)
        out, _ = self.rnn(out)  # (B, T, H)
        return self.head(out)


class DeterministicDynamics(nn.Module):
    """LSTM-f / LSTM-c of section 4.3: the states h_1:T (B, T, state) unrolled from a clip's z (B, D_z)."""

    def __init__(self, z_dim: int, state_dim: int, mode: str, forget_bias: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(z_dim, state_dim, batch_first=True)
        with torch.no_grad():  # gates i, f, g, o: a positive forget bias keeps c_t, and so z, for longer
            self.lstm.bias_ih_l0[state_dim : 2 * state_dim].add_(forget_bias)
        # The paper sets h_0 = z; with D_z = 64 < 512 a linear map gives (h_0, c_0) the state's width.
        self.initial = nn.Linear(z_dim, 2 * state_dim) if mode == "lstm_f" else None

    def forward(self, z: Tensor, steps: int) -> Tensor:
        B, D_z = z.shape
        if self.initial is None:  # lstm_c: z is the input at every step, h_0 = 0
            out, _ = self.lstm(z[:, None].expand(B, steps, D_z).contiguous())
            return out  # (B, T, state)
        h0, c0 = self.initial(z)[None].chunk(2, dim=-1)  # (1, B, state) each
        out, _ = self.lstm(z.new_zeros(B, steps, D_z), (h0.contiguous(), c0.contiguous()))
        return out  # (B, T, state)


def _over_time(q: Gaussian, steps: int) -> Gaussian:
    """A per-clip Gaussian (B, 1, D_z) repeated over `steps` (a no-op for a per-frame one)."""
    B, _, D_z = q.mean.shape
    return Gaussian(q.mean.expand(B, steps, D_z), q.logvar.expand(B, steps, D_z))


class DSVAE(BidirectionalStaticVAE):
    def __init__(self, config: DSVAEConfig):
        c = config
        stochastic = c.dynamics == "stochastic"
        super().__init__(c, frame_latent_dim=c.dynamic_dim if stochastic else c.state_dim)
        self.dynamic_encoder = DynamicEncoder(c)
        self.prior = LSTMPrior(c.dynamic_dim, c.hidden_dim) if stochastic else None
        self.dynamics = (
            None
            if stochastic
            else DeterministicDynamics(c.dynamic_dim, c.state_dim, c.dynamics, c.forget_bias)
        )

    # --- inference network (encode_static: BidirectionalStaticVAE) ---------------------------------
    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        """q(f | x_1:T) (B, D_f) and q(z | ...) (B, T, D_z); the full q is conditioned on f's mean."""
        features = self.frame_encoder(x)  # (B, T, D_h)
        static = self.encode_static(features)
        return static, _over_time(self.dynamic_encoder(features, static.mean), x.shape[1])

    # --- generative network (decode, sample_static: StaticDynamicVAE) ------------------------------
    def frame_latents(self, dynamic: Tensor) -> Tensor:
        """What `decode` renders frame t from beside f: z_t (B, T, D_z), or for lstm_* the states
        (B, T, state) unrolled from z at step 0 (the other steps repeat it)."""
        if self.dynamics is None:
            return dynamic
        return self.dynamics(dynamic[:, 0], dynamic.shape[1])

    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        """z from p(z_t | z_<t), or one z ~ N(0, I) per clip for lstm_*; `static` is unused (p(z) does
        not depend on f), and taken so every family samples through one call."""
        if self.prior is not None:
            return self.prior.sample(batch, steps, like)  # (B, T, D_z)
        z = torch.randn(batch, 1, self.config.dynamic_dim, device=like.device, dtype=like.dtype)
        return z.expand(batch, steps, -1)  # (B, T, D_z): one z per clip

    def forward(self, x: Tensor) -> DSVAEOutput:
        B, T = x.shape[:2]
        features = self.frame_encoder(x)  # (B, T, D_h)
        static = self.encode_static(features)
        static_sample = static.rsample()  # (B, D_f)
        dynamic = self.dynamic_encoder(features, static_sample)
        dynamic_sample = dynamic.rsample().expand(B, T, -1)  # (B, T, D_z): a per-clip z repeats over time
        prior = self.prior(dynamic_sample) if self.prior is not None else Gaussian.standard_like(dynamic.mean)
        return DSVAEOutput(
            static=static,
            dynamic=dynamic,
            static_sample=static_sample,
            dynamic_sample=dynamic_sample,
            dynamic_prior=prior,
            recon=self.decode(static_sample, dynamic_sample),
        )

    @torch.no_grad()
    def impute(self, x: Tensor, observed_steps: int) -> Tensor:
        """Section 4.3's imputation: encode the first t = `observed_steps` frames of x (B, T, C, H, W),
        predict the rest, and return all T frames (B, T, C, H, W).

        f and z_1:t are posterior means from the observed frames only. The stochastic model continues with
        its prior, z_t+1:T ~ p(z_t+1 | z_<=t); lstm_* encode their one z from the observed frames and unroll
        it for T steps. With t = T this is reconstruction from posterior means.
        """
        B, T = x.shape[:2]
        if not 1 <= observed_steps <= T:
            raise ValueError(f"observed_steps = {observed_steps}: the clip has {T} frames, observe 1 to {T}")
        features = self.frame_encoder(x[:, :observed_steps])  # (B, t, D_h)
        static = self.encode_static(features).mean  # (B, D_f)
        observed = self.dynamic_encoder(features, static).mean  # (B, t, D_z), or (B, 1, D_z) per clip
        if self.prior is None:
            return self.decode(static, observed.expand(B, T, -1))
        if observed_steps < T:
            future = self.prior.sample(B, T - observed_steps, like=observed, context=observed)
            observed = torch.cat([observed, future], dim=1)  # (B, T, D_z)
        return self.decode(static, observed)

    # --- objective ---------------------------------------------------------------------------------
    def loss(
        self, x: Tensor, out: DSVAEOutput, targets: dict[str, Tensor], dataset_size: int
    ) -> dict[str, Tensor]:
        """Negative ELBO of Eq. 1's model under the chosen q, per clip and averaged over B. `targets` and
        `dataset_size` are unused: the signature is the one the training loop calls every family with."""
        terms = elbo_terms(x, out, self.config.likelihood, self.config.pixel_sigma)
        terms["loss"] = terms["recon"] + terms["kl_static"] + terms["kl_dynamic"]
        return terms
