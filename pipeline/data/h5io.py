"""The HDF5 layout every seqdis dataset follows, and its readers and writers.

A dataset file (`results/data/{dataset}.h5`):

    /                      attrs: name, layout_version, modality ("video" or "audio"),
                                  frame_shape (T, H, W, C) for video, (T, D) for audio,
                                  factors (JSON: {name: {"kind": "static"|"dynamic", "classes": [...],
                                                         "group": null or a group name}}),
                                  protocol (JSON, datasets scored for Table 1 only: {"title": a human
                                            name, "directions": ["fixed_dynamics", "fixed_static"] or
                                            a subset, "score_head": a factor or group name}),
                                  and any dataset-specific attrs (audio: the feature settings)
    /{split}/frames        video: uint8 (N, T, H, W, C), one chunk per sequence, gzip
    /{split}/features      audio: float32 (N, T, D) feature frames (log mel or log spectrum), gzip
    /{split}/factors/{f}   int16 (N,) per sequence, or (N, T) per frame
    /{split}/sequence_id   int32 (N,) identity of the source (Sprites: the character id)
    /{split}/trajectories/{name}  float32 (N, T, ...) continuous per-frame states (positions, angles)

Factors that share a `group` share their classes and are one order-free multiset: SMMNIST's two digits
are `digit_a` and `digit_b` of group `digits`, and a judge recognises which digits a clip shows, not
which one is "a".

A label file (`results/labels/{dataset}_{labeler}.h5`) holds pseudo labels for the same sequences:

    /                      attrs: dataset, labeler, and the labeler's settings
    /labels/{split}/{name} any dtype, first axis N in the dataset's order

`protocol` is how evaluation scores the dataset's generated clips (pipeline/evaluate/table1.py): the
generation directions and the judge head whose p(y|x) gives IS, H(y|x) and H(y); the tables print the
title. The file carries it so that how a dataset is scored is written beside its factors, by its builder,
and so that the tables read it with h5py, without torch.

Splits are named groups (`train`, `test`), so a reader never loads what it does not use.

Audio keeps its own `features` name rather than posing as (N, T, 1, D, 1) images: the dtype and the
meaning differ (standardised floats, not pixels), and a reader that asks for one gets a clear error
instead of a silent reinterpretation. `Split.frames` holds whichever the file has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.data.factors import Factor, judge_heads
from pipeline.files import DamagedFileError, atomic_path, damaged, rebuild_hint

LAYOUT_VERSION = 1
GENERATION_DIRECTIONS = ("fixed_dynamics", "fixed_static")  # which latent a generated clip keeps


@dataclass(frozen=True)
class Protocol:
    """How a dataset is scored for Table 1 (the `protocol` root attribute, see the module doc)."""

    directions: tuple[str, ...]  # of GENERATION_DIRECTIONS, in the order they are scored
    score_head: str  # the judge head (a factor or a group) whose p(y|x) gives IS, H(y|x) and H(y)
    title: str  # the dataset's name in the tables

    def __post_init__(self) -> None:
        unknown = [d for d in self.directions if d not in GENERATION_DIRECTIONS]
        if not self.directions or unknown:
            raise ValueError(
                f"protocol directions {self.directions} must be one or more of {GENERATION_DIRECTIONS}"
            )


@dataclass(frozen=True)
class Split:
    """One split held in memory: video frames stay uint8 until a batch is made."""

    frames: np.ndarray  # video (N, T, H, W, C) uint8, or audio features (N, T, D) float32
    factors: dict[str, np.ndarray]  # name -> (N,) or (N, T)
    sequence_id: np.ndarray  # (N,)
    trajectories: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, T, ...) float32

    def __len__(self) -> int:
        return len(self.frames)


def write_dataset(
    path: str | os.PathLike,
    *,
    name: str,
    factors: list[Factor],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    trajectories: tuple[str, ...] = (),
    protocol: Protocol | None = None,
    attrs: Mapping[str, object] | None = None,
    compression_level: int = 4,
) -> None:
    """Write a dataset file atomically.

    `splits[s]` holds `frames` (video) or `features` (audio), `sequence_id`, one array per factor and one
    per name in `trajectories`. `protocol` is how a dataset scored for Table 1 is scored (None for the
    others). `attrs` are extra root attributes (e.g. audio feature settings).
    """
    key = "features" if "features" in next(iter(splits.values())) else "frames"
    frame_shapes = {s: arrays[key].shape[1:] for s, arrays in splits.items()}
    if len(set(frame_shapes.values())) != 1:
        raise ValueError(f"{path}: splits disagree on the frame shape: {frame_shapes}")
    heads = [head.name for head in judge_heads(factors)]
    if protocol is not None and protocol.score_head not in heads:
        raise ValueError(f"{path}: protocol score head '{protocol.score_head}' is none of the heads {heads}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["name"] = name
        f.attrs["layout_version"] = LAYOUT_VERSION
        f.attrs["modality"] = "audio" if key == "features" else "video"
        f.attrs["frame_shape"] = next(iter(frame_shapes.values()))
        for attr, value in (attrs or {}).items():
            f.attrs[attr] = value
        f.attrs["factors"] = json.dumps(
            {
                fac.name: {"kind": fac.kind, "classes": list(fac.classes), "group": fac.group}
                for fac in factors
            }
        )
        if protocol is not None:
            f.attrs["protocol"] = json.dumps(asdict(protocol))
        for split, arrays in splits.items():
            group = f.create_group(split)
            frames = np.asarray(arrays[key], dtype=np.float32 if key == "features" else np.uint8)
            group.create_dataset(
                key,
                data=frames,
                chunks=(1, *frames.shape[1:]),
                compression="gzip",
                compression_opts=compression_level,
                shuffle=True,
            )
            group.create_dataset("sequence_id", data=np.asarray(arrays["sequence_id"], dtype=np.int32))
            for fac in factors:
                group.create_dataset(f"factors/{fac.name}", data=np.asarray(arrays[fac.name], dtype=np.int16))
            for name in trajectories:
                group.create_dataset(
                    f"trajectories/{name}",
                    data=np.asarray(arrays[name], dtype=np.float32),
                    compression="gzip",
                )


class LayoutError(KeyError):
    """A readable file that lacks a split or a group the caller asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open `path` for reading; an HDF5 error while opening or reading it names the file and the fix."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: build it with the workflow (snakemake {path})")
    try:
        with h5py.File(path, "r", locking=False) as f:
            yield f
    except (LayoutError, DamagedFileError, FileNotFoundError):
        raise
    except (OSError, RuntimeError, KeyError) as err:  # h5py's errors for truncated or corrupted files
        what = "is truncated" if "truncated" in str(err) else "is damaged"
        raise damaged(path, f"{what} (HDF5: {err})") from err


def read_factors(path: str | os.PathLike) -> list[Factor]:
    with _open(path) as f:
        meta = json.loads(f.attrs["factors"])
    return [Factor(name, m["kind"], tuple(m["classes"]), m.get("group")) for name, m in meta.items()]


def read_protocol(path: str | os.PathLike) -> Protocol:
    """The Table 1 scoring protocol that the dataset file `path` carries."""
    with _open(path) as f:
        if "protocol" not in f.attrs:
            raise LayoutError(
                f"{path} carries no scoring protocol (root attribute 'protocol'): only the datasets scored "
                "for Table 1 (sprites, smmnist, dsprites, mug) have one, and a file built before their "
                f"builders wrote it lacks it; {rebuild_hint(path)}"
            )
        meta = json.loads(f.attrs["protocol"])
    return Protocol(tuple(meta["directions"]), meta["score_head"], meta["title"])


def read_attrs(path: str | os.PathLike) -> dict:
    with _open(path) as f:
        return dict(f.attrs)


def list_splits(path: str | os.PathLike) -> list[str]:
    with _open(path) as f:
        return sorted(name for name, item in f.items() if isinstance(item, h5py.Group))


MODEL_SPLITS = ("train", "test")  # what the models train and are scored on, and what labellers label
JUDGE_SPLIT = "judge_train"  # optional extra clips the judge alone trains on (a generated dataset's)


def model_splits(path: str | os.PathLike) -> list[str]:
    return [split for split in list_splits(path) if split in MODEL_SPLITS]


def judge_training_split(path: str | os.PathLike) -> str:
    """The split a dataset's judge trains on: its own `judge_train` where the builder made one."""
    return JUDGE_SPLIT if JUDGE_SPLIT in list_splits(path) else "train"


def read_split(path: str | os.PathLike, split: str, limit: int | None = None) -> Split:
    """Load one split into memory (the first `limit` sequences when given)."""
    with _open(path) as f:
        if split not in f:
            raise LayoutError(f"{path} has no split '{split}' (it has {sorted(f)}): {rebuild_hint(path)}")
        group = f[split]
        rows = slice(0, limit)
        return Split(
            frames=group["features" if "features" in group else "frames"][rows],
            factors={name: ds[rows] for name, ds in group["factors"].items()},
            sequence_id=group["sequence_id"][rows],
            trajectories={name: ds[rows] for name, ds in group.get("trajectories", {}).items()},
        )


def write_labels(
    path: str | os.PathLike,
    *,
    attrs: Mapping[str, object],
    labels: Mapping[str, Mapping[str, np.ndarray]],
) -> None:
    """Write pseudo labels atomically: `labels[split][name]` is an array whose first axis is N."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for split, arrays in labels.items():
            for name, array in arrays.items():
                f.create_dataset(f"labels/{split}/{name}", data=array, compression="gzip")


def read_labels(path: str | os.PathLike, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    with _open(path) as f:
        if f"labels/{split}" not in f:
            raise LayoutError(f"{path} has no labels for split '{split}': {rebuild_hint(path)}")
        return {name: ds[slice(0, limit)] for name, ds in f[f"labels/{split}"].items()}
