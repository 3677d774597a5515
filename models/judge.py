"""The judge: a classifier trained on real clips that scores generated ones (S3VAE sec. 5, DSVAE sec. 4.1).

A conv trunk reads every frame beside its change to the next frame (two-stream style: the change shows
which way things move and turn), two ways: flattened through a linear layer (where things are) and
pooled over the image (what is there and how it turns, wherever it is: a digit, a sprite's shape); a
bidirectional LSTM over time; one linear head per labelled factor, reading the LSTM's summary and the
pooled features averaged over the clip. Without the pooled read and the frame changes the judge never
learnt moving dSprites' shape and rotation (chance after 30 epochs; docs/judges.md).

`LocatingJudge` reads a group of objects drawn at known places (SMMNIST's two digits): a fully convolutional
map gives every cell of a coarse grid a class, or background; trained on the cells where each object's centre
lies (the workflow's locating loss), it learns a digit where the digit is, not from a label of
the whole frame. Being fully convolutional, it can train on windows around the objects and read whole
frames. On SMMNIST it reads 95-96% of the digit pairs after 4 minutes of one core in fp32, where `Judge` read
93.7% after 36 minutes and 78-87% after 5 (docs/judges.md).
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


@dataclass(frozen=True)
class LocatingJudgeConfig:
    in_channels: int = 1
    image_size: int = 64
    conv_channels: tuple[int, ...] = (32, 64, 128)  # strided: a cell is image_size / 2**len pixels
    refine_layers: int = 1  # 3x3 convs at the cells' resolution: each widens what a cell sees by 2 cells
    object_size: int = (
        32  # side in pixels of each object, whose top-left corners the dataset's `position` holds
    )
    heads: dict[str, int] = field(default_factory=dict)  # one group head: name -> number of classes
    temperature: dict[str, float] = field(default_factory=dict)  # as JudgeConfig's

    @property
    def cell(self) -> int:
        return self.image_size // final_side(self.image_size, self.conv_channels)


class LocatingJudge(nn.Module):
    def __init__(self, config: LocatingJudgeConfig):
        super().__init__()
        c = config
        if len(c.heads) != 1:
            raise ValueError(f"a LocatingJudge reads one group of objects, not the heads {sorted(c.heads)}")
        self.config = c
        ((self.head, n_classes),) = c.heads.items()
        width = c.conv_channels[-1]
        refine = [
            nn.Sequential(
                nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)
            )
            for _ in range(c.refine_layers)
        ]
        self.places = nn.Sequential(
            conv_trunk(c.in_channels, c.conv_channels), *refine, nn.Conv2d(width, n_classes + 1, 1)
        )

    def forward(self, x: Tensor, *, places: bool = False):
        """x: (B, T, C, H, W) in [0, 1] -> {head: logits (B, classes)}: the log of the share of the clip's
        object mass (every cell's class probabilities, summed over cells and frames) each class holds. Two
        digits give (1/2, 1/2) and one digit shown twice (1, 0), which the group head's pair rule reads.
        With `places`, each frame's cell logits (B, T, classes + 1, G, G) instead, the last class 'no
        object's centre here', which training scores."""
        B, T = x.shape[:2]
        logits = self.places(x.flatten(0, 1).contiguous(memory_format=torch.channels_last)).float()
        if places:
            return logits.view(B, T, *logits.shape[1:])
        mass = torch.softmax(logits, dim=1)[:, :-1].sum(dim=(2, 3)).view(B, T, -1).sum(dim=1)  # (B, K)
        share = mass / mass.sum(dim=1, keepdim=True)
        return {self.head: share.clamp_min(1e-12).log() / self.config.temperature.get(self.head, 1.0)}
