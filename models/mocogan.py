"""MoCoGAN: decomposing motion and content for video generation (Tulyakov, Liu, Yang, Kautz; CVPR 2018).

Unconditional generator: a content code z_C ~ N(0, I) fixed over the clip, motion codes z_M(t) from a GRU
driven by fresh noise eps_t ~ N(0, I) (section 3.1), and a DCGAN-style frame generator G_I that renders
frame t from [z_C, z_M(t)]. Two discriminators (section 3.2): D_I scores single frames drawn from the clips,
D_V (3D convolutions) scores whole clips. Both GAN objectives are the non-saturating ones.

How Table 1 applies without an encoder. Table 1 keeps one latent of a real clip and resamples the other;
MoCoGAN cannot infer a clip's latents, so "keep" means keep a sampled code and "real labels" become the
judge's own verdict. `table1_probabilities` draws `groups` groups of `group_size` clips:

- fixed_dynamics: a group shares its motion noise eps_1:T; each clip draws its own content z_C.
- fixed_static: a group shares z_C; each clip draws its own motion noise.

A group's label of a factor is the judge's majority vote over the group's clips (dynamic factors in the
fixed_dynamics groups, static factors in the fixed_static groups; an order-free head such as SMMNIST's
`digits` votes with whole multisets), so Acc is how often the judge agrees
with its group's majority: the fraction of clips whose kept factor survived resampling the other code.
IS, H(y|x) and H(y) use the judge's dynamic-factor probabilities of the generated clips, which are
unconditional samples in both directions (fixed_dynamics on a subset balanced over the group labels, as
for the VAEs). `table1_probabilities` returns what `pipeline.evaluate.table1.score_run` takes, so every
score is computed by the code that scores the other families.

Shapes: B batch, T time, C, H, W frame, D_c content code, D_m motion code, D_e motion noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.blocks import FrameDecoder, conv_trunk, final_side
from pipeline.evaluate.heads import predict  # how the judge's p(y|x) is read, so votes are read as scores are

DIRECTIONS = ("fixed_dynamics", "fixed_static")


@dataclass(frozen=True)
class MoCoGANConfig:
    in_channels: int = 3
    image_size: int = 64
    generator_channels: tuple[int, ...] = (64, 128, 256, 512)  # G_I, listed from the image side
    discriminator_channels: tuple[int, ...] = (64, 128, 256, 512)  # D_I and D_V
    content_dim: int = 50  # d_C in the paper
    motion_dim: int = 10  # d_M, the GRU's state
    noise_dim: int = 10  # eps_t, the GRU's input


class ImageDiscriminator(nn.Module):
    """D_I: frames (N, C, H, W) -> one logit per frame (N,)."""

    def __init__(self, c: MoCoGANConfig):
        super().__init__()
        channels = c.discriminator_channels
        self.trunk = conv_trunk(c.in_channels, channels)
        self.out = nn.Conv2d(channels[-1], 1, final_side(c.image_size, channels))

    def forward(self, frames: Tensor) -> Tensor:
        h = self.trunk(frames.contiguous(memory_format=torch.channels_last))  # (N, C', H', W')
        return self.out(h).flatten().float()  # (N,)


class VideoDiscriminator(nn.Module):
    """D_V: clips (B, T, C, H, W) -> logits (B, T), one per time position of the last 3D-conv map.

    The convs halve space and keep time (kernel 3 over time, padding 1), so any clip length works; the paper
    strides 4 x 4 x 4 kernels over time too, which needs T >= 16 at four layers."""

    def __init__(self, c: MoCoGANConfig):
        super().__init__()
        channels = c.discriminator_channels
        widths = (c.in_channels, *channels)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            layers.append(nn.Conv3d(a, b, (3, 4, 4), stride=(1, 2, 2), padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm3d(b))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        final = final_side(c.image_size, channels)
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv3d(channels[-1], 1, (1, final, final))

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(x.transpose(1, 2))  # (B, C', T, H', W')
        return self.out(h).flatten(1).float()  # (B, T)


class MoCoGAN(nn.Module):
    def __init__(self, config: MoCoGANConfig):
        super().__init__()
        c = config
        self.config = c
        self.motion_rnn = nn.GRU(c.noise_dim, c.motion_dim, batch_first=True)
        self.generator = FrameDecoder(
            c.content_dim + c.motion_dim, c.in_channels, c.image_size, c.generator_channels
        )
        self.image_discriminator = ImageDiscriminator(c)
        self.video_discriminator = VideoDiscriminator(c)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.motion_rnn.parameters(), *self.generator.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.image_discriminator.parameters(), *self.video_discriminator.parameters()]

    def generate(
        self, batch: int, steps: int, content: Tensor | None = None, motion_noise: Tensor | None = None
    ) -> Tensor:
        """Clips (B, T, C, H, W) in [0, 1]; content (B, D_c) and motion noise (B, T, D_e) are drawn unless
        given. The GRU starts from h_0 = 0, so the noise alone sets the motion."""
        c = self.config
        like = next(self.parameters())
        if content is None:
            content = torch.randn(batch, c.content_dim, device=like.device)
        if motion_noise is None:
            motion_noise = torch.randn(batch, steps, c.noise_dim, device=like.device)
        motion, _ = self.motion_rnn(motion_noise)  # (B, T, D_m)
        latent = torch.cat([content[:, None].expand(batch, steps, -1), motion], dim=-1)  # (B, T, D_c + D_m)
        return self.generator(latent)

    def _scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """D_I's logits on one frame drawn at random from each clip (B,), and D_V's logits (B, T)."""
        B, T = x.shape[:2]
        frames = x[torch.arange(B, device=x.device), torch.randint(T, (B,), device=x.device)]  # (B, C, H, W)
        return self.image_discriminator(frames), self.video_discriminator(x)

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Binary cross-entropy of D_I and D_V on real clips (label 1) and generated ones (label 0, detached
        so the generator gets no gradient from this step)."""
        (image_real, video_real), (image_fake, video_fake) = self._scores(real), self._scores(fake.detach())
        terms = {
            "d_image": F.binary_cross_entropy_with_logits(image_real, torch.ones_like(image_real))
            + F.binary_cross_entropy_with_logits(image_fake, torch.zeros_like(image_fake)),
            "d_video": F.binary_cross_entropy_with_logits(video_real, torch.ones_like(video_real))
            + F.binary_cross_entropy_with_logits(video_fake, torch.zeros_like(video_fake)),
        }
        terms["loss"] = terms["d_image"] + terms["d_video"]
        return terms

    def generator_loss(self, fake: Tensor) -> dict[str, Tensor]:
        """Non-saturating generator loss: -log D(G(z)) for both discriminators."""
        image, video = self._scores(fake)
        terms = {
            "g_image": F.binary_cross_entropy_with_logits(image, torch.ones_like(image)),
            "g_video": F.binary_cross_entropy_with_logits(video, torch.ones_like(video)),
        }
        terms["loss"] = terms["g_image"] + terms["g_video"]
        return terms


def _majority(rows: np.ndarray) -> np.ndarray:
    """The most frequent row of (n, m) integer rows (ties: the smallest), as (m,)."""
    values, counts = np.unique(rows, axis=0, return_counts=True)
    return values[counts.argmax()]


@torch.no_grad()
def table1_probabilities(
    model: MoCoGAN,
    judge: nn.Module,
    judge_heads,
    *,
    directions=DIRECTIONS,
    groups: int,
    group_size: int,
    steps: int,
    batch_size: int,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Judge probabilities of generated clips in `directions` (see the module docstring) and the group
    majority labels: ({direction: {head: (groups * group_size, K)}}, {factor: (groups * group_size,)}),
    the arguments `pipeline.evaluate.table1.score_run` takes. `judge_heads` are the dataset's
    (`pipeline.evaluate.heads.judge_heads`): a
    group head (SMMNIST's order-free `digits`) votes with the multiset it
    predicts, and the majority multiset becomes its member factors' labels. Heads whose kind is not kept by
    any of `directions` get no labels (score_run reads none)."""
    c = model.config
    like = next(model.parameters())
    n = groups * group_size

    def shared(*shape: int) -> Tensor:  # one draw per group, repeated for its clips
        return torch.randn(groups, *shape, device=like.device).repeat_interleave(group_size, dim=0)

    def fresh(*shape: int) -> Tensor:
        return torch.randn(n, *shape, device=like.device)

    codes = {
        "fixed_dynamics": lambda: (fresh(c.content_dim), shared(steps, c.noise_dim)),
        "fixed_static": lambda: (shared(c.content_dim), fresh(steps, c.noise_dim)),
    }
    probs: dict[str, dict[str, np.ndarray]] = {}
    for direction in directions:
        content, noise = codes[direction]()
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in judge.config.heads}
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            clips = model.generate(len(content[rows]), steps, content[rows], noise[rows])
            for name, logits in judge(clips).items():
                chunks[name].append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        probs[direction] = {name: np.concatenate(parts) for name, parts in chunks.items()}

    labels = {}
    for head in judge_heads:
        direction = "fixed_dynamics" if head.kind == "dynamic" else "fixed_static"
        if direction not in probs:
            continue
        votes = predict(head, probs[direction][head.name]).reshape(groups, group_size, len(head.members))
        majority = np.stack([_majority(group) for group in votes]).repeat(group_size, axis=0)  # (n, m)
        labels.update({member: majority[:, i] for i, member in enumerate(head.members)})
    return probs, labels
