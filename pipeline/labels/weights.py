"""Pretrained weights read from local files, never downloaded: where torch.hub keeps them, the check of a
copied file against the sha256 prefix in its published name, and loading a state dict with errors that
say what is wrong. The flow labels (RAFT) and the landmark labels (FAN) share them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn


def url_file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def hub_cache_path(url: str) -> Path:
    """Where torch.hub (and so the libraries' own loaders) keeps the file downloaded from `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url_file_name(url)


def check_sha256(path: Path, url: str) -> None:
    """`path`'s sha256 starts with the hex digits after the '-' of the URL's file name.

    torchvision and face_alignment name their files <name>-<first hex digits of the sha256>.<ext>; a
    copied file is checked here as torch.hub checks a download, so a truncated copy fails clearly.
    """
    expected = re.search(r"-([a-f0-9]+)\.", url_file_name(url)).group(1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise ValueError(
            f"{path} has sha256 {digest[: len(expected)]}..., expected {expected}...: the file is damaged "
            f"or incomplete, download it again from {url}"
        )


def load_state_dict_file(model: nn.Module, path: Path, what: str, url: str) -> nn.Module:
    """`model` with the state dict in `path` (the weights of `what`, published at `url`)."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a stray file fails in pickle, zipfile or struct: all mean "not weights"
        raise ValueError(f"{path} is not a PyTorch state dict ({err}): download {url}") from err
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as err:
        # The first line of torch's message only says that loading failed; the next one says what differs.
        reason = " ".join(str(err).splitlines()[1:2]).strip()[:300]
        raise ValueError(f"{path} does not hold {what} weights ({reason}): use the file from {url}") from err
    return model
