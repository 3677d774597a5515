"""Clips in memory, batched for torch.

A split of Sprites is 9000 x 8 x 64 x 64 x 3 bytes (885 MB): it is read once into a uint8 tensor and every
batch is sliced from memory, which keeps the loader far ahead of the model (benchmarks/bench_loader.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pipeline.data import h5io


def to_input(frames: Tensor) -> Tensor:
    """uint8 video (B, T, H, W, C) -> float (B, T, C, H, W) in [0, 1]; audio features (B, T, D) pass as is."""
    if frames.dtype != torch.uint8:
        return frames
    return frames.permute(0, 1, 4, 2, 3).float().div_(255.0)


def to_uint8(x: Tensor) -> np.ndarray:
    """float (B, T, C, H, W) in [0, 1] -> uint8 (B, T, H, W, C), for figures."""
    return (x.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()


@dataclass(frozen=True)
class ClipSet:
    frames: Tensor  # (N, T, H, W, C) uint8, or audio features (N, T, D) float32
    targets: dict[str, Tensor]  # factor labels, trajectories, pseudo labels and sequence_id, first axis N
    factors: tuple[h5io.Factor, ...]
    trajectories: tuple[str, ...] = ()  # names of the float per-frame states among the targets

    def __len__(self) -> int:
        return len(self.frames)

    def resident(self, device: str | torch.device) -> ClipSet:
        """The clips held on `device` when it is a GPU (Sprites' 885 MB fit many times over), so a batch is
        sliced there instead of copied from the host every step; on the CPU, the clips as they are."""
        if torch.device(device).type == "cpu":
            return self
        return dataclasses.replace(
            self,
            frames=self.frames.to(device),
            targets={name: t.to(device) for name, t in self.targets.items()},
        )

    def batch(self, index: Tensor, device: str | torch.device = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
        x = to_input(self.frames[index].to(device, non_blocking=True))  # (B, T, C, H, W)
        return x, {name: t[index].to(device, non_blocking=True) for name, t in self.targets.items()}

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        """Batches of `batch_size` clips; with `shard=(rank, ranks)`, this rank's rows of each: every
        ranks-th from its rank-th, so the ranks' parts partition the batch (pipeline/train/distributed.py)."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        order = order.to(self.frames.device)
        stop = len(self) - len(self) % batch_size if drop_last else len(self)
        rank, ranks = shard
        for start in range(0, stop, batch_size):
            rows = order[start : start + batch_size][rank::ranks]
            if len(rows):
                yield self.batch(rows, device)


def load_clips(
    dataset: str | os.PathLike,
    split: str,
    *,
    labels: str | os.PathLike | None = None,
    limit: int | None = None,
) -> ClipSet:
    """One split of a dataset file, with the pseudo labels of a label file when given."""
    arrays = h5io.read_split(dataset, split, limit)
    targets = {name: torch.from_numpy(a.astype(np.int64)) for name, a in arrays.factors.items()}
    targets.update({name: torch.from_numpy(a) for name, a in arrays.trajectories.items()})
    targets["sequence_id"] = torch.from_numpy(arrays.sequence_id.astype(np.int64))
    if labels is not None:
        for name, a in h5io.read_labels(labels, split, limit).items():
            if len(a) != len(arrays):
                raise ValueError(
                    f"{labels} has {len(a)} '{name}' labels for '{split}', {dataset} has {len(arrays)} clips:"
                    " the labels are stale, rerun the label rule (snakemake --forcerun label_flow)"
                )
            targets[name] = torch.from_numpy(np.ascontiguousarray(a))
    return ClipSet(
        torch.from_numpy(arrays.frames),
        targets,
        tuple(h5io.read_factors(dataset)),
        tuple(arrays.trajectories),
    )
