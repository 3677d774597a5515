"""A trained model on disk: its family's name, its config dataclass as a dict, and its weights."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from pipeline.data.h5io import atomic_path
from pipeline.train.families import family


def save_model(path: str | os.PathLike, family_name: str, model: nn.Module) -> None:
    with atomic_path(path) as tmp:
        saved = {
            "family": family_name,
            "config": dataclasses.asdict(model.config),
            "state_dict": model.state_dict(),
        }
        torch.save(saved, tmp)


def load_model(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: train it first (snakemake {path})")
    saved = torch.load(path, map_location=device, weights_only=False)
    model = family(saved["family"]).rebuild(saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()
