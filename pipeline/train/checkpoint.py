"""Training runs on disk: the resumable checkpoint of a run, and the model file it ends in.

A run directory (`run/` beside a model file) holds `checkpoint.pt`, written after every epoch: the state of
every part of the training (model, optimisers, scheduler), the epoch, the optimiser step, whether the run
has finished, and the run's identity: its config, the sha256 of each input file (dataset, pseudo labels) and
the sha256 of the code that trains (the `pipeline` and `models` packages). A checkpoint is resumed only by
the run that wrote it and only while that run is unfinished. One of other inputs, another config or other
code, a finished one and one that cannot be read are set aside with a log line that says why, and the run
trains from its first epoch: a rerun never returns a model made from what it was not asked to use.

A model file holds its family's name, its config dataclass as a dict and its weights.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from pipeline.files import atomic_path, damaged, file_sha256, tree_sha256
from pipeline.train.families import family

logger = logging.getLogger(__name__)

CODE_PACKAGES = ("pipeline", "models")  # the code whose change makes a checkpoint another run's
# What torch.load raises on a truncated, corrupted or foreign file
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


@functools.cache
def code_sha256() -> str:
    """One sha256 over the Python sources of the packages that train (read once per process)."""
    return tree_sha256(Path(importlib.import_module(name).__file__).parent for name in CODE_PACKAGES)


def run_identity(config: Mapping, inputs: Mapping[str, str | os.PathLike | None]) -> dict:
    """What makes a run itself: its config (JSON), each input file's sha256 by role, and the code's."""
    return {
        "config": json.dumps(config, sort_keys=True),
        "inputs": {role: file_sha256(path) for role, path in sorted(inputs.items()) if path is not None},
        "code": code_sha256(),
    }


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, Mapping):
        return {k: v for key, part in value.items() for k, v in _flat(part, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _config_changes(saved: str, current: str, shown: int = 4) -> str:
    """The config keys whose values differ, as `key: old -> new` (the first `shown` of them)."""
    old, new = _flat(json.loads(saved)), _flat(json.loads(current))
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    listed = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:shown])
    return listed + (f" and {len(changed) - shown} more" if len(changed) > shown else "")


def why_not_resumed(saved: Mapping, identity: Mapping) -> str | None:
    """Why checkpoint contents `saved` are not the unfinished run `identity` names (None: resume it)."""
    if "identity" not in saved:
        return "it was written before checkpoints recorded their inputs and code"
    old = saved["identity"]
    changed = sorted(
        role
        for role in old["inputs"].keys() | identity["inputs"].keys()
        if old["inputs"].get(role) != identity["inputs"].get(role)
    )
    if changed:
        return f"inputs changed ({', '.join(changed)})"
    if old["config"] != identity["config"]:
        return f"config changed ({_config_changes(old['config'], identity['config'])})"
    if old["code"] != identity["code"]:
        return f"code changed (the {' or '.join(CODE_PACKAGES)} packages)"
    if saved.get("finished"):
        return "finished run: training again"
    return None


def save_checkpoint(
    path: Path, state: Mapping, *, epochs_done: int, step: int, identity: Mapping, finished: bool
) -> None:
    """Write the state_dict of every part of `state`, the epoch, the optimiser step, the run's identity and
    whether it has finished, atomically."""
    contents = {
        **{name: part.state_dict() for name, part in state.items()},
        "epoch": epochs_done,
        "step": step,
        "identity": dict(identity),
        "finished": finished,
    }
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)


def resume(path: Path, identity: Mapping, state: Mapping, device: str, read_only: bool = False) -> int:
    """The epochs already done by the run `identity` names: those of checkpoint `path` when it is that run's
    and unfinished (its parts are loaded into `state`), else 0. A checkpoint that is not resumed is logged
    with the reason and removed (unless `read_only`: a rank other than 0 finds what rank 0 left)."""
    if not path.exists():
        return 0
    try:
        saved = torch.load(path, map_location=device, weights_only=False)
        reason = why_not_resumed(saved, identity)
    except (*_UNREADABLE, KeyError, TypeError) as err:
        reason = f"it cannot be read ({type(err).__name__}: {err})"
    if reason is None:
        for name, part in state.items():
            part.load_state_dict(saved[name])
        logger.info("resuming %s after epoch %d", path, saved["epoch"])
        return saved["epoch"]
    if not read_only:
        logger.warning("not resuming %s: %s; training from epoch 1", path, reason)
        path.unlink()
    return 0


def save_model(path: str | os.PathLike, family_name: str, model: nn.Module) -> None:
    with atomic_path(path) as tmp:
        saved = {
            "family": family_name,
            "config": dataclasses.asdict(model.config),
            "state_dict": model.state_dict(),
        }
        torch.save(saved, tmp)


def load_model(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """The trained model in `path`, in eval mode on `device`; a missing, damaged or foreign file names
    itself and the rule that remakes it."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: train it first (snakemake {path})")
    try:
        saved = torch.load(path, map_location=device, weights_only=False)
    except _UNREADABLE as err:
        truncated = "central directory" in str(err) or isinstance(err, EOFError)
        what = "is truncated" if truncated else "is damaged"
        raise damaged(path, f"{what} (torch.load: {type(err).__name__}: {err})") from err
    missing = [k for k in ("family", "config", "state_dict") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise damaged(path, f"is not a seqdis model file (it lacks {missing})")
    try:
        model = family(saved["family"]).rebuild(saved["config"])
        model.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        what = f"does not hold the model its config describes ({type(err).__name__}: {err})"
        raise damaged(path, what) from err
    return model.to(device).eval()
