"""A deterministic tiny autoencoder trained by the shared loop, in one process or as one rank of torchrun:
`python ddp_worker.py RUN_DIR` or `python -m torch.distributed.run --nproc-per-node=2 ddp_worker.py RUN_DIR`.

Its loss is a mean of per-clip terms with no noise and no BatchNorm, so one process and two ranks at the same
global batch must take the same steps (tests/test_distributed.py)."""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

from pipeline.data.clips import ClipSet
from pipeline.train import distributed
from pipeline.train.loop import TrainSettings, fit

N, T, SIZE = 32, 3, 8


class FrameAutoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = nn.Sequential(nn.Flatten(2), nn.Linear(3 * SIZE * SIZE, 16), nn.Tanh())
        self.decode = nn.Linear(16, 3 * SIZE * SIZE)

    def forward(self, x):  # (B, T, C, H, W) -> (B, T, C*H*W)
        return self.decode(self.encode(x))


def loss_fn(model, x, targets):
    error = (model(x) - x.flatten(2)).square().sum(dim=(1, 2))  # (B,) per clip
    return {"loss": error.mean()}


def clips(seed: int) -> ClipSet:
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 256, (N, T, SIZE, SIZE, 3), dtype=np.uint8))
    return ClipSet(frames, {"sequence_id": torch.arange(N)}, ())


def main(run_dir: str) -> None:
    torch.manual_seed(0)
    model = FrameAutoencoder()
    settings = TrainSettings(epochs=3, batch_size=8, lr=1e-2, device=distributed.rank_device("cpu"))
    fit(
        model=model,
        loss_fn=loss_fn,
        train_set=clips(0),
        test_set=clips(1),
        settings=settings,
        run_dir=run_dir,
        run_config={"test": "ddp"},
    )
    if distributed.world().main:
        torch.save(model.state_dict(), f"{run_dir}/weights.pt")


if __name__ == "__main__":
    main(sys.argv[1])
