"""Self-supervision labels from optical flow (S3VAE, Zhu et al. CVPR 2020, section 4.2).

Each frame's flow magnitude is averaged over a G x G grid of cells; the indices of the k cells that move
most are the frame's pseudo label, the target of S3VAE's dynamic factor prediction.

Frame t's label uses the flow into it, from frame t-1 to t: S3VAE's q(z_t | x_<=t) sees frames up to t, so
the motion that ends in frame t is what z_t can know (the flow out of it, from t to t+1, needs frame t+1).
The first frame (t = 0) has no predecessor, so it reuses the flow from frame 0 to 1: motion is smooth over one
frame, and every frame then carries a label.

Backends: "dis" (OpenCV's DIS flow, CPU, no weights: the offline default) and "raft_small" /
"raft_large" (torchvision's RAFT, GPU when the caller passes device="cuda"; weights through
`RAFT_WEIGHTS` and `load_raft`, never downloaded here).
"""

from __future__ import annotations

import argparse
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


def label_flow(
    *,
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    backend: str = FromConfig("flow.backend"),
    grid: int = FromConfig("flow.grid"),
    topk: int = FromConfig("flow.topk"),
    device: str = FromConfig("device"),
    batch_size: int = FromConfig("flow.batch_size"),
    raft_weights: str | os.PathLike | None = FromConfig("flow.raft_weights"),
    chunk: int = 256,
) -> None:
    """Write the flow labels of every split of `dataset` to `output` (`flow_topk`, `flow_magnitude`).

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
    labels = {}
    for split in h5io.model_splits(dataset):
        frames = h5io.read_split(dataset, split).frames
        _check_frames(frames)
        n, t = frames.shape[:2]
        cells = np.empty((n, t, topk), dtype=np.int16)
        magnitudes = np.empty((n, t, grid, grid), dtype=np.float16)
        start_time = time.perf_counter()
        with tqdm(total=n, desc=f"flow {name}/{split}", unit="seq") as bar:
            for start in range(0, n, chunk):
                rows = slice(start, start + chunk)
                cells[rows], magnitudes[rows] = topk_cells(flow_fn(frames[rows]), grid=grid, topk=topk)
                bar.update(len(frames[rows]))
        seconds = time.perf_counter() - start_time
        pairs = n * (t - 1)
        log.info("%s/%s: %d frame pairs in %.1fs (%.0f/s)", name, split, pairs, seconds, pairs / seconds)
        labels[split] = {"flow_topk": cells, "flow_magnitude": magnitudes}
    h5io.write_labels(
        output,
        attrs={"dataset": name, "labeler": f"flow-{backend}", "backend": backend, "grid": grid, "topk": topk},
        labels=labels,
    )
    log.info("wrote %s", output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset HDF5 file")
    parser.add_argument("--output", required=True, help="label HDF5 file to write")
    parser.add_argument("--backend", default="dis", choices=BACKENDS)
    parser.add_argument("--grid", type=int, required=True, help="cells per side of the grid")
    parser.add_argument("--topk", type=int, required=True, help="cells per frame label")
    parser.add_argument("--device", default="cpu", help="torch device for RAFT, e.g. cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="frame pairs per RAFT forward pass")
    parser.add_argument("--raft-weights", default=None, help="RAFT state dict (default: torch hub cache)")
    parser.add_argument("--chunk", type=int, default=256, help="sequences held as flow at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    label_flow(**vars(args))


if __name__ == "__main__":
    main()
