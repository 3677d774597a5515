"""Self-supervision labels from optical flow (S3VAE, Zhu et al. CVPR 2020, section 4.2), the targets of
S3VAE's dynamic factor prediction, two kinds from one flow:

- `flow_topk`: each frame's flow magnitude averaged over a G x G grid (`grid`); the indices of the k cells
  that move most.
- `flow_direction`: the authors' labels (their code, ODE-RL 0d4c701 code_sprite/utils.py lines 94-97 read
  them from `dsprite_train_OF_Label_3block.pkl`: 3 x 3 cells, -1 where a cell does not move, frame 0 a
  dummy): per cell of a G' x G' grid (`direction_grid`) the direction of its mean flow vector in 8 bins,
  where the cell moves. How the authors decided that a cell moves is not in their code: here a cell moves
  when its mean flow vector is at least `moving_threshold` pixels per frame long (README: Flow labels).

Frame t's label uses the flow into it, from frame t-1 to t: S3VAE's q(z_t | x_<=t) sees frames up to t, so
the motion that ends in frame t is what z_t can know (the flow out of it, from t to t+1, needs frame t+1).
The first frame (t = 0) has no predecessor, so it reuses the flow from frame 0 to 1: motion is smooth over one
frame, and every frame then carries a label.

Backends: "dis" (OpenCV's DIS flow, CPU, no weights: the offline default) and "raft_small" /
"raft_large" (torchvision's RAFT, GPU when the caller passes device="cuda"; weights through
`RAFT_WEIGHTS` and `load_raft`, never downloaded here).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small
from tqdm import tqdm

from pipeline.config import FromConfig, resolve_device
from pipeline.data import h5io
from pipeline.labels.weights import check_sha256, hub_cache_path, load_state_dict_file, url_file_name

log = logging.getLogger(__name__)

FlowBackend = Literal["dis", "raft_small", "raft_large"]
BACKENDS: tuple[str, ...] = get_args(FlowBackend)

# The weights torchvision recommends for each model (its DEFAULT); each enum records the URL, whose
# file name carries the sha256 prefix torch.hub checks on download, and the minimum input size.
RAFT_WEIGHTS = {
    "raft_small": Raft_Small_Weights.C_T_V2,
    "raft_large": Raft_Large_Weights.C_T_SKHT_V2,
}
_RAFT_BUILDERS = {"raft_small": raft_small, "raft_large": raft_large}


def raft_cache_path(name: str) -> Path:
    """Where torch.hub (and so torchvision's own loader) keeps the weights of `name`."""
    return hub_cache_path(RAFT_WEIGHTS[name].url)


def load_raft(name: str, weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """Build torchvision's RAFT `name` in eval mode on the CPU with local weights; never downloads.

    The weights come from `weights_path` when given, else from the torch hub cache, where
    `torchvision.models.optical_flow.<name>(weights=...)` leaves them on a machine with internet.
    """
    if name not in RAFT_WEIGHTS:
        raise ValueError(f"unknown RAFT model '{name}': choose one of {sorted(RAFT_WEIGHTS)}")
    weights = RAFT_WEIGHTS[name]
    if weights_path is None:
        path = raft_cache_path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"no weights for {name} at {path} (this code never downloads: offline it would hang). "
                f"Download {weights.url} on a machine with internet, e.g. with "
                f'`python -c "import torchvision; torchvision.models.optical_flow.{name}'
                f"(weights='{weights.name}')\"`, then copy the file to {path}, or set flow.raft_weights "
                f"to its path. Offline, use `flow.backend: dis`, which needs no weights."
            )
    else:
        path = Path(weights_path)
        if not path.exists():
            raise FileNotFoundError(
                f"flow.raft_weights is {path}, which does not exist: point it at the {name} weights "
                f"({weights.url}), or unset it to use the torch hub cache"
            )
    if path.name == url_file_name(weights.url):
        check_sha256(path, weights.url)
    model = load_state_dict_file(_RAFT_BUILDERS[name](weights=None), path, name, weights.url)
    log.info("loaded %s weights from %s", name, path)
    return model.eval()


def _num_threads() -> int:
    # Snakemake sets OMP_NUM_THREADS to the rule's threads; outside a rule use the CPUs we may run on.
    env = os.environ.get("OMP_NUM_THREADS")
    return int(env) if env else len(os.sched_getaffinity(0))


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.shape[-1] == 3 else frame[..., 0]


def _dis_flow(frames: np.ndarray, threads: int) -> np.ndarray:
    """DIS flow of every consecutive frame pair, the sequences split over `threads` threads.

    OpenCV releases the GIL inside `calc`, so threads scale with the cores; its own threads do not help on
    64 x 64 frames (Sprites: 2330 pairs/s with one, 1920 with two on 2 cores), so each `calc` runs on one.
    """
    n, t, h, w, _ = frames.shape
    flow = np.empty((n, t - 1, h, w, 2), dtype=np.float32)

    def label_rows(rows: np.ndarray) -> None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # an instance is not thread-safe
        for i in rows:
            gray = [_gray(frame) for frame in frames[i]]
            for j in range(t - 1):
                flow[i, j] = dis.calc(gray[j], gray[j + 1], None)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(label_rows, np.array_split(np.arange(n), min(threads, n))))
    return flow


def _raft_input_size(h: int, w: int, min_size: int) -> tuple[int, int]:
    # RAFT's weights are trained on frames of at least min_size pixels and its encoder downsamples by 8.
    scale = max(1.0, min_size / min(h, w))
    return math.ceil(h * scale / 8) * 8, math.ceil(w * scale / 8) * 8


@torch.inference_mode()
def _raft_flow(
    frames: np.ndarray, model: torch.nn.Module, name: str, device: torch.device, batch_size: int
) -> np.ndarray:
    n, t, h, w, c = frames.shape
    weights = RAFT_WEIGHTS[name]
    transforms = weights.transforms()
    size = _raft_input_size(h, w, min(weights.meta["min_size"]))
    first = frames[:, :-1].reshape(-1, h, w, c)
    second = frames[:, 1:].reshape(-1, h, w, c)
    out = np.empty((len(first), h, w, 2), dtype=np.float32)
    for start in range(0, len(first), batch_size):
        rows = slice(start, start + batch_size)
        img1, img2 = (
            torch.from_numpy(x[rows]).to(device).permute(0, 3, 1, 2).expand(-1, 3, -1, -1)  # (B, 3, H, W)
            for x in (first, second)
        )
        img1, img2 = transforms(img1, img2)
        img1, img2 = (F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (img1, img2))
        flow = model(img1, img2)[-1]  # (B, 2, H', W'), last of the refinement steps
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        # Vectors are in pixels of the upsampled frame: shrink x and y by their own scale factor.
        flow = flow * torch.tensor([w / size[1], h / size[0]], device=device).view(1, 2, 1, 1)
        out[rows] = flow.permute(0, 2, 3, 1).cpu().numpy()
    return out.reshape(n, t - 1, h, w, 2)


def _flow_fn(
    backend: str, *, device: str, batch_size: int, raft_weights: str | os.PathLike | None
) -> Callable[[np.ndarray], np.ndarray]:
    """Set `backend` up once (threads, weights); return frames (N, T, H, W, C) -> flow (N, T-1, H, W, 2)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown flow backend '{backend}': choose one of {list(BACKENDS)} (flow.backend)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if backend == "dis":
        if device != "cpu":
            log.info("DIS flow runs on the CPU; device '%s' is not used", device)
        cv2.setNumThreads(1)
        return partial(_dis_flow, threads=_num_threads())
    torch_device = torch.device(device)
    model = load_raft(backend, raft_weights).to(torch_device)
    return partial(_raft_flow, model=model, name=backend, device=torch_device, batch_size=batch_size)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 5 or frames.shape[-1] not in (1, 3) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, T, H, W, 1 or 3), got {frames.dtype} {frames.shape}")
    if frames.shape[1] < 2:
        raise ValueError(f"flow needs at least 2 frames per sequence, got T={frames.shape[1]}")


def compute_flow(
    frames: np.ndarray,
    *,
    backend: str,
    device: str = "cpu",
    batch_size: int = 64,
    raft_weights: str | os.PathLike | None = None,
) -> np.ndarray:
    """Flow from each frame to the next: uint8 (N, T, H, W, C) -> float32 (N, T-1, H, W, 2), in pixels (x, y).

    `device` and `batch_size` (frame pairs per forward pass) apply to RAFT; DIS runs on the CPU.
    """
    _check_frames(frames)
    return _flow_fn(backend, device=device, batch_size=batch_size, raft_weights=raft_weights)(frames)


def _check_grid(h: int, w: int, *, grid: int, topk: int) -> None:
    if grid < 1 or h % grid or w % grid:
        raise ValueError(f"flow.grid={grid} must divide the frame size {h}x{w}: pick a divisor of both")
    if not 1 <= topk <= grid * grid:
        raise ValueError(f"flow.topk={topk} must be between 1 and grid*grid={grid * grid}")


def topk_cells(flow: np.ndarray, *, grid: int, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """The `topk` grid cells of largest mean flow magnitude for each frame.

    flow (N, T-1, H, W, 2) -> (cells (N, T, topk) int16, row * grid + col by decreasing magnitude;
    magnitudes (N, T, grid, grid) float32). Frame t gets the flow t-1 -> t, the first frame the 0 -> 1
    flow (module doc).
    Ties go to the lower cell index.
    """
    n, t1, h, w, _ = flow.shape
    _check_grid(h, w, grid=grid, topk=topk)
    if t1 < 1:
        raise ValueError(f"flow needs at least one frame pair, got shape {flow.shape}")
    magnitude = np.linalg.norm(flow, axis=-1)  # (N, T-1, H, W)
    cells = magnitude.reshape(n, t1, grid, h // grid, grid, w // grid).mean(axis=(3, 5), dtype=np.float32)
    cells = np.concatenate([cells[:, :1], cells], axis=1)  # (N, T, G, G): frame t <- flow t-1 -> t
    order = np.argsort(-cells.reshape(n, t1 + 1, grid * grid), axis=-1, kind="stable")
    return order[..., :topk].astype(np.int16), cells


DIRECTION_BINS = 8  # 45-degree sectors; bin 0 is centred on +x (rightwards), bin 2 on +y (downwards)


def cell_edges(side: int, cells: int) -> np.ndarray:
    """Pixel edges of `cells` cells along a side; uneven where `cells` does not divide it (64 into 3:
    21, 21, 22 pixels)."""
    return np.round(np.linspace(0, side, cells + 1)).astype(int)


def direction_cells(flow: np.ndarray, *, grid: int, moving_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of a `grid` x `grid` grid, the direction of its mean flow vector, where the cell moves.

    flow (N, T-1, H, W, 2) -> (directions (N, T, grid * grid) int8: the bin (0 to 7, DIRECTION_BINS) of the
    cell's mean flow into frame t, -1 where it is shorter than `moving_threshold` pixels and in frame 0,
    which no flow enters, as the authors mask it; speeds (N, T, grid, grid) float32, the mean vector's
    length, 0 in frame 0). Cells are row-major (row * grid + col); a mirror image swaps columns and maps
    bin b to (4 - b) mod 8.
    """
    n, t1, h, w, _ = flow.shape
    rows, cols = cell_edges(h, grid), cell_edges(w, grid)
    area = np.outer(np.diff(rows), np.diff(cols))[None, None, :, :, None]  # pixels per cell
    sums = np.add.reduceat(np.add.reduceat(flow, rows[:-1], axis=2), cols[:-1], axis=3)  # (N, T-1, G, G, 2)
    mean = sums / area
    speed = np.linalg.norm(mean, axis=-1)  # (N, T-1, G, G)
    angle = np.arctan2(mean[..., 1], mean[..., 0])
    bins = np.round(angle / (2 * math.pi / DIRECTION_BINS)).astype(np.int64) % DIRECTION_BINS
    directions = np.where(speed >= moving_threshold, bins, -1).reshape(n, t1, grid * grid)
    first = np.full((n, 1, grid * grid), -1)
    speeds = np.concatenate([np.zeros((n, 1, grid, grid), np.float32), speed.astype(np.float32)], axis=1)
    return np.concatenate([first, directions], axis=1).astype(np.int8), speeds


def mirror_directions(directions: np.ndarray, grid: int) -> np.ndarray:
    """The direction labels (..., grid * grid) of the clips' left-right mirror image: each row of cells end
    for end, bin b -> (4 - b) mod 8, still cells still."""
    cells = directions.reshape(*directions.shape[:-1], grid, grid)[..., ::-1]
    return np.where(cells >= 0, (4 - cells) % DIRECTION_BINS, -1).reshape(directions.shape)


def mirror_agreement(a: np.ndarray, b: np.ndarray, grid: int) -> float:
    """Share of the (cell, frame) labels of clips `b` (..., T, cells) that are those of `a`'s mirror image,
    the first frame (no flow enters it) left out."""
    return float((mirror_directions(a, grid)[..., 1:, :] == b[..., 1:, :]).mean())


def split_labels(
    frames: np.ndarray, flow_fn: Callable, settings: dict, chunk: int, desc: str
) -> dict[str, np.ndarray]:
    """Both kinds of labels of one split's frames (N, T, H, W, C), `chunk` sequences of flow at a time;
    `settings` holds grid, topk, direction_grid and moving_threshold."""
    _check_frames(frames)
    n, t = frames.shape[:2]
    grid, cells_per_side = settings["grid"], settings["direction_grid"]
    labels = {
        "flow_topk": np.empty((n, t, settings["topk"]), dtype=np.int16),
        "flow_magnitude": np.empty((n, t, grid, grid), dtype=np.float16),
        "flow_direction": np.empty((n, t, cells_per_side**2), dtype=np.int8),
        "flow_speed": np.empty((n, t, cells_per_side, cells_per_side), dtype=np.float16),
    }
    started = time.perf_counter()
    with tqdm(total=n, desc=desc, unit="seq") as bar:
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            flow = flow_fn(frames[rows])
            top = topk_cells(flow, grid=grid, topk=settings["topk"])
            labels["flow_topk"][rows], labels["flow_magnitude"][rows] = top
            moving = direction_cells(flow, grid=cells_per_side, moving_threshold=settings["moving_threshold"])
            labels["flow_direction"][rows], labels["flow_speed"][rows] = moving
            bar.update(len(frames[rows]))
    pairs, seconds = n * (t - 1), time.perf_counter() - started
    log.info("%s: %d frame pairs in %.1fs (%.0f/s)", desc, pairs, seconds, pairs / seconds)
    still = labels["flow_direction"][:, 1:] < 0
    log.info("%s: %.1f%% of the direction cells move", desc, 100 * (1 - still.mean()))
    return labels


def label_flow(
    *,
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    backend: str = FromConfig("flow.backend"),
    grid: int = FromConfig("flow.grid"),
    topk: int = FromConfig("flow.topk"),
    direction_grid: int = FromConfig("flow.direction_grid"),
    moving_threshold: float = FromConfig("flow.moving_threshold"),
    device: str = FromConfig("device"),
    batch_size: int = FromConfig("flow.batch_size"),
    raft_weights: str | os.PathLike | None = FromConfig("flow.raft_weights"),
    chunk: int = 256,
) -> None:
    """Write the flow labels of every split of `dataset` to `output` (`flow_topk`, `flow_magnitude`,
    `flow_direction`, `flow_speed`: module doc).

    Sequences go through in chunks of `chunk`, so the flow of a whole split is never held in memory.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    attrs = h5io.read_attrs(dataset)
    name = attrs["name"]
    _, h, w, _ = attrs["frame_shape"]
    _check_grid(int(h), int(w), grid=grid, topk=topk)  # fail before any flow is computed
    flow_fn = _flow_fn(
        backend, device=resolve_device(device), batch_size=batch_size, raft_weights=raft_weights
    )
    settings = {"grid": grid, "topk": topk, "direction_grid": direction_grid}
    settings["moving_threshold"] = moving_threshold
    labels = {
        split: split_labels(
            h5io.read_split(dataset, split).frames, flow_fn, settings, chunk, f"{name}/{split}"
        )
        for split in h5io.model_splits(dataset)
    }
    h5io.write_labels(
        output,
        attrs={"dataset": name, "labeler": f"flow-{backend}", "backend": backend, **settings},
        labels=labels,
    )
    log.info("wrote %s", output)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(label_flow)
