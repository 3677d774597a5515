"""The judge: a classifier trained on real clips that scores generated ones (S3VAE sec. 5, DSVAE sec. 4.1).

A conv trunk reads every frame beside its change to the next frame (two-stream style: the change shows
which way things move and turn), two ways: flattened through a linear layer (where things are) and
pooled over the image (what is there and how it turns, wherever it is: a digit, a sprite's shape); a
bidirectional LSTM over time; one linear head per labelled factor, reading the LSTM's summary and the
pooled features averaged over the clip. Without the pooled read and the frame changes the judge never
learnt moving dSprites' shape and rotation (chance after 30 epochs; docs/judges.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from models.blocks import bidirectional_summary, conv_trunk, final_side


@dataclass(frozen=True)
class JudgeConfig:
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (32, 64, 128, 256)
    frame_dim: int = 256
    hidden_dim: int = 128
    heads: dict[str, int] = field(default_factory=dict)  # factor -> number of classes
    # head -> the temperature dividing its clip logits, fit on training clips after training
    temperature: dict[str, float] = field(default_factory=dict)


class Judge(nn.Module):
    def __init__(self, config: JudgeConfig):
        super().__init__()
        c = config
        self.config = c
        side = final_side(c.image_size, c.conv_channels)
        width = c.conv_channels[-1]
        self.convs = conv_trunk(2 * c.in_channels, c.conv_channels)
        self.placed = nn.Sequential(
            nn.Linear(width * side * side, c.frame_dim), nn.LeakyReLU(0.2, inplace=True)
        )
        self.lstm = nn.LSTM(c.frame_dim + 2 * width, c.hidden_dim, batch_first=True, bidirectional=True)
        summary_dim = 2 * c.hidden_dim + 2 * width
        self.heads = nn.ModuleDict({name: nn.Linear(summary_dim, n) for name, n in c.heads.items()})
        self.frame_heads = nn.ModuleDict({name: nn.Linear(2 * width, n) for name, n in c.heads.items()})

    def read_frames(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, T, C, H, W) -> the placed read (B, T, D) and the pooled read (B, T, 2C')."""
        B, T, C, H, W = x.shape
        change = torch.cat([x[:, 1:] - x[:, :-1], torch.zeros_like(x[:, :1])], dim=1)  # the last frame: none
        pairs = torch.cat([x, change], dim=2).reshape(B * T, 2 * C, H, W)
        h = self.convs(pairs.contiguous(memory_format=torch.channels_last))  # (BT, C', h, w)
        pooled = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=-1)  # (BT, 2C')
        return self.placed(h.flatten(1)).view(B, T, -1), pooled.view(B, T, -1)

    def forward(self, x: Tensor, *, per_frame: bool = False):
        """x: (B, T, C, H, W) in [0, 1] -> {factor: logits (B, classes)}; with `per_frame`, also each frame's
        own logits {factor: (B, T, classes)} from its pooled read alone, which training scores too."""
        placed, pooled = self.read_frames(x)
        out, _ = self.lstm(torch.cat([placed, pooled], dim=-1))  # (B, T, 2H)
        summary = torch.cat([bidirectional_summary(out), pooled.mean(dim=1)], dim=-1)  # (B, 2H + 2C')
        clip = {
            name: head(summary).float() / self.config.temperature.get(name, 1.0)
            for name, head in self.heads.items()
        }
        if not per_frame:
            return clip
        return clip, {name: head(pooled).float() for name, head in self.frame_heads.items()}
