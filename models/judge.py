"""The judge: a classifier trained on real clips that scores generated ones (S3VAE sec. 5, DSVAE sec. 4.1).

A conv frame encoder, a bidirectional LSTM over time, and one linear head per labelled factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from models.blocks import FrameEncoder, bidirectional_summary


@dataclass(frozen=True)
class JudgeConfig:
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (32, 64, 128, 256)
    frame_dim: int = 256
    hidden_dim: int = 128
    heads: dict[str, int] = field(default_factory=dict)  # factor -> number of classes


class Judge(nn.Module):
    def __init__(self, config: JudgeConfig):
        super().__init__()
        c = config
        self.config = c
        self.frame_encoder = FrameEncoder(c.in_channels, c.image_size, c.conv_channels, c.frame_dim)
        self.lstm = nn.LSTM(c.frame_dim, c.hidden_dim, batch_first=True, bidirectional=True)
        self.heads = nn.ModuleDict({name: nn.Linear(2 * c.hidden_dim, n) for name, n in c.heads.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, T, C, H, W) in [0, 1] -> {factor: logits (B, classes)}."""
        out, _ = self.lstm(self.frame_encoder(x))  # (B, T, 2H)
        summary = bidirectional_summary(out)  # (B, 2H)
        return {name: head(summary).float() for name, head in self.heads.items()}
