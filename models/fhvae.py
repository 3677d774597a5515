"""FHVAE: factorized hierarchical VAE (Hsu, Zhang, Glass; NIPS 2017), the speech baseline of S3VAE Table 3
and DSVAE Table 2.

A sequence (an utterance) is cut into segments x = x_1:T. Each segment has two latents:
- z2, the sequence-level latent, with the prior p(z2 | mu2) = N(mu2, 0.5^2 I) around a per-sequence mean
  mu2 ~ N(0, I) (a trainable lookup table, one row per training sequence);
- z1, the segment-level latent, p(z1) = N(0, I).
Inference: q(z2 | x) from an LSTM over x; q(z1 | x, z2) from an LSTM over [x_t, z2]. The decoder LSTM
reads [z1, z2] at every step and emits each frame's mean.

Segment objective (Hsu et al.'s "discriminative segment variational lower bound"):
  L(x) = E_q[log p(x | z1, z2)] - KL(q(z1) || p(z1)) - KL(q(z2) || p(z2 | mu2_i)) + log p(mu2_i) / N_i
         + alpha * log p(i | z2),   log p(i | z2) = log p(z2 | mu2_i) - log sum_j p(z2 | mu2_j)
over segments of sequence i, which has N_i segments. alpha = 0 is the plain FHVAE, alpha = 10 the one
the papers compare. A sequence with no row in the table (a test utterance) is scored under the marginal
p(z2) = N(0, (1 + 0.5^2) I) and has no discriminative term.

The seqdis interface (`models.interface.SequentialAutoencoder`: S3VAE's without the priors' samplers):
static = z2 (the speaker), dynamic = z1 (the content), so `encode(x)` returns (q(z2 | x), q(z1 | x, E[z2])).
z1 is one vector per segment, (B, D_z), not per frame.
Departures: the frame likelihood is a fixed-variance Gaussian (summed squared error, as in our S3VAE),
where Hsu et al. learn the decoder's variance.

Shapes: B batch, T time, D feature frame, D_f = size of z2, D_z = size of z1, N sequences in the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.blocks import Gaussian, GaussianHead


@dataclass(frozen=True)
class FHVAEConfig:
    feature_dim: int = 80  # D (80 log mel bands in Hsu et al.)
    segment_frames: int = 20  # T, the decoder's number of steps
    hidden_dim: int = 256  # every LSTM (Hsu et al.: 256)
    static_dim: int = 32  # D_f, size of z2 (Hsu et al.: 32)
    dynamic_dim: int = 32  # D_z, size of z1 (Hsu et al.: 32)
    num_sequences: int = 1  # rows of the mu2 table: the training utterances
    alpha: float = 0.0  # weight of the discriminative objective log p(i | z2)
    z2_prior_std: float = 0.5  # p(z2 | mu2) = N(mu2, 0.5^2 I)
    mu2_prior_std: float = 1.0  # p(mu2) = N(0, I)


@dataclass(frozen=True)
class FHVAEOutput:
    static: Gaussian  # q(z2 | x), (B, D_f)
    dynamic: Gaussian  # q(z1 | x, z2), (B, D_z)
    static_sample: Tensor  # (B, D_f)
    dynamic_sample: Tensor  # (B, D_z)
    recon: Tensor  # (B, T, D) frame means


def _last_state(lstm: nn.LSTM, x: Tensor) -> Tensor:
    _, (h, _) = lstm(x)
    return h[-1]  # (B, H)


class FHVAE(nn.Module):
    def __init__(self, config: FHVAEConfig):
        super().__init__()
        c = config
        self.config = c
        self.z2_lstm = nn.LSTM(c.feature_dim, c.hidden_dim, batch_first=True)
        self.z2_head = GaussianHead(c.hidden_dim, c.static_dim)
        self.z1_lstm = nn.LSTM(c.feature_dim + c.static_dim, c.hidden_dim, batch_first=True)
        self.z1_head = GaussianHead(c.hidden_dim, c.dynamic_dim)
        self.decoder_lstm = nn.LSTM(c.static_dim + c.dynamic_dim, c.hidden_dim, batch_first=True)
        self.decoder_out = nn.Linear(c.hidden_dim, c.feature_dim)
        self.mu2 = nn.Embedding(c.num_sequences, c.static_dim)
        nn.init.zeros_(self.mu2.weight)  # the prior mean of mu2

    # --- inference network -------------------------------------------------------------------------
    def encode_z1(self, x: Tensor, z2: Tensor) -> Gaussian:
        B, T, D = x.shape
        inputs = torch.cat([x, z2[:, None].expand(B, T, -1).to(x.dtype)], dim=-1)  # (B, T, D + D_f)
        return self.z1_head(_last_state(self.z1_lstm, inputs))  # (B, D_z)

    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        static = self.z2_head(_last_state(self.z2_lstm, x))  # (B, D_f)
        return static, self.encode_z1(x, static.mean)

    # --- generative network ------------------------------------------------------------------------
    def decode(self, static: Tensor, dynamic: Tensor) -> Tensor:
        """Frames (B, T, D) from z2 (B, D_f) and z1 (B, D_z); a (B, T', D_z) z1 is averaged over T'."""
        if dynamic.dim() == 3:
            dynamic = dynamic.mean(1)
        B, T = dynamic.shape[0], self.config.segment_frames
        latent = torch.cat([static, dynamic], dim=-1)[:, None].expand(B, T, -1)  # (B, T, D_f + D_z)
        h, _ = self.decoder_lstm(latent.contiguous())  # (B, T, H)
        return self.decoder_out(h).float()  # (B, T, D)

    def forward(self, x: Tensor) -> FHVAEOutput:
        static = self.z2_head(_last_state(self.z2_lstm, x))
        static_sample = static.rsample()  # (B, D_f)
        dynamic = self.encode_z1(x, static_sample)
        dynamic_sample = dynamic.rsample()  # (B, D_z)
        return FHVAEOutput(
            static, dynamic, static_sample, dynamic_sample, self.decode(static_sample, dynamic_sample)
        )

    # --- objective ---------------------------------------------------------------------------------
    def _z2_prior(self, index: Tensor) -> Gaussian:
        """p(z2 | mu2_i) for table rows, the marginal N(0, (1 + 0.5^2) I) for index -1: (B, D_f)."""
        c = self.config
        seen = (index >= 0)[:, None]  # (B, 1)
        mean = self.mu2(index.clamp(min=0)) * seen  # (B, D_f)
        var = c.z2_prior_std**2 + c.mu2_prior_std**2 * (~seen).float()  # (B, 1)
        return Gaussian(mean, torch.log(var).expand_as(mean))

    def loss(
        self, x: Tensor, out: FHVAEOutput, targets: dict[str, Tensor], dataset_size: int
    ) -> dict[str, Tensor]:
        """Negative discriminative segment lower bound, per segment averaged over B.

        `targets["sequence_index"]` (B,) is each segment's row of the mu2 table (-1: none), and
        `targets["sequence_segments"]` (B,) its sequence's number of segments N_i.
        """
        c = self.config
        B = x.shape[0]
        index = targets["sequence_index"].long()
        seen = index >= 0
        z2_prior = self._z2_prior(index)
        terms = {
            "recon": F.mse_loss(out.recon, x, reduction="sum") / B,
            "kl_dynamic": out.dynamic.kl(Gaussian.standard_like(out.dynamic.mean)).sum() / B,
            "kl_static": out.static.kl(z2_prior).sum() / B,
        }
        mu2 = self.mu2(index.clamp(min=0))  # (B, D_f)
        log_p_mu2 = -0.5 * ((mu2 / c.mu2_prior_std) ** 2 + math.log(2 * math.pi * c.mu2_prior_std**2)).sum(-1)
        terms["log_p_mu2"] = (log_p_mu2 * seen / targets["sequence_segments"].clamp(min=1)).sum() / B
        total = terms["recon"] + terms["kl_dynamic"] + terms["kl_static"] - terms["log_p_mu2"]

        if c.alpha > 0 and seen.any():
            # log N(z2; mu2_j, 0.5^2 I) against every row j, (B, N): a softmax over the training sequences.
            table = Gaussian(
                self.mu2.weight[None], torch.full_like(self.mu2.weight[None], 2 * math.log(c.z2_prior_std))
            )
            logits = table.log_prob(out.static_sample[:, None].float()).sum(-1)  # (B, N)
            terms["discriminative"] = F.cross_entropy(logits[seen], index[seen], reduction="sum") / B
            total = total + c.alpha * terms["discriminative"]

        terms["loss"] = total
        return terms
