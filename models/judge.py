"""The judge: a classifier trained on real clips that scores generated ones (S3VAE sec. 5, DSVAE sec. 4.1).

A conv frame encoder, a bidirectional LSTM over time, and one linear head per labelled factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from models.blocks import FrameEncoder, bidirectional_summary, conv_trunk


@dataclass(frozen=True)
class JudgeConfig:
    in_channels: int = 3
    image_size: int = 64
    conv_channels: tuple[int, ...] = (32, 64, 128, 256)
    frame_dim: int = 256
    hidden_dim: int = 128
    heads: dict[str, int] = field(default_factory=dict)  # factor -> number of classes
    # "flatten": the conv map's cells each weighed by position (FrameEncoder); "mean": averaged over the map,
    # so what the judge learns of an object anywhere on the canvas holds everywhere (moving digits)
    pool: str = "flatten"


class PooledFrameEncoder(nn.Module):
    """Conv trunk, mean over the map, linear: (B, T, C, H, W) -> (B, T, D)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], out_dim: int):
        super().__init__()
        self.convs = conv_trunk(in_channels, channels)
        self.proj = nn.Sequential(nn.Linear(channels[-1], out_dim), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        h = self.convs(x.reshape(B * T, C, H, W)).mean(dim=(2, 3))  # (B*T, C')
        return self.proj(h).view(B, T, -1)  # (B, T, D)


class Judge(nn.Module):
    def __init__(self, config: JudgeConfig):
        super().__init__()
        c = config
        self.config = c
        if c.pool == "mean":
            self.frame_encoder = PooledFrameEncoder(c.in_channels, c.conv_channels, c.frame_dim)
        elif c.pool == "flatten":
            self.frame_encoder = FrameEncoder(c.in_channels, c.image_size, c.conv_channels, c.frame_dim)
        else:
            raise ValueError(f"JudgeConfig.pool = '{c.pool}': use 'flatten' or 'mean'")
        self.lstm = nn.LSTM(c.frame_dim, c.hidden_dim, batch_first=True, bidirectional=True)
        self.heads = nn.ModuleDict({name: nn.Linear(2 * c.hidden_dim, n) for name, n in c.heads.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, T, C, H, W) in [0, 1] -> {factor: logits (B, classes)}."""
        out, _ = self.lstm(self.frame_encoder(x))  # (B, T, 2H)
        summary = bidirectional_summary(out)  # (B, 2H)
        return {name: head(summary).float() for name, head in self.heads.items()}
