"""MoCoGAN: decomposing motion and content for video generation (Tulyakov, Liu, Yang, Kautz; CVPR 2018).

Unconditional generator: a content code z_C ~ N(0, I) fixed over the clip, motion codes z_M(t) from a GRU
driven by fresh noise eps_t ~ N(0, I) (section 3.1), and a DCGAN-style frame generator G_I that renders
frame t from [z_C, z_M(t)]. Two discriminators (section 3.2): D_I scores single frames drawn from the clips,
D_V (3D convolutions) scores whole clips. Both GAN objectives are the non-saturating ones.

Shapes: B batch, T time, C, H, W frame, D_c content code, D_m motion code, D_e motion noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.blocks import FrameDecoder, conv_trunk, final_side


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
