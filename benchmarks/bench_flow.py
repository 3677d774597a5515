"""Throughput of flow labelling (frame pairs per second) on 64 x 64 frames, per backend and device.

    python benchmarks/bench_flow.py [--pairs N] [--raft-cpu-pairs M] [--batch-size B]

DIS runs on the CPU. raft_small runs with randomly initialised weights, so no download is needed: its
speed does not depend on the weights' values (a fixed number of refinement steps, no early exit). It runs
on the CPU with fewer pairs, and on CUDA when there is a GPU. Each time covers `compute_flow` plus
`topk_cells`, model set-up included (well under a second); threads follow OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.optical_flow import raft_small

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from pipeline.labels.flow import compute_flow, topk_cells  # noqa: E402

T, SIZE, GRID, TOPK = 8, 64, 8, 3


def clips(pairs: int, seed: int = 0) -> np.ndarray:
    """(N, T, 64, 64, 3) uint8 clips of a noise texture drifting by a random step, N*(T-1) >= pairs."""
    rng = np.random.default_rng(seed)
    n = -(-pairs // (T - 1))
    out = np.empty((n, T, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        texture = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        dy, dx = rng.integers(-3, 4, size=2)
        for t in range(T):
            out[i, t] = np.roll(texture, (dy * t, dx * t), axis=(0, 1))
    return out


def measure(frames: np.ndarray, **kwargs) -> tuple[int, float]:
    compute_flow(frames[:1], **kwargs)  # warm up: thread pools, kernels, allocator
    start = time.perf_counter()
    topk_cells(compute_flow(frames, **kwargs), grid=GRID, topk=TOPK)
    return frames.shape[0] * (T - 1), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2048, help="frame pairs for DIS and for RAFT on CUDA")
    parser.add_argument("--raft-cpu-pairs", type=int, default=64, help="frame pairs for RAFT on the CPU")
    parser.add_argument("--batch-size", type=int, default=64, help="frame pairs per RAFT forward pass")
    args = parser.parse_args()

    rows = [("dis", "cpu", *measure(clips(args.pairs), backend="dis"))]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "raft_small_random.pth"
        torch.manual_seed(0)
        torch.save(raft_small(weights=None).state_dict(), weights)
        devices = {"cpu": args.raft_cpu_pairs} | ({"cuda": args.pairs} if torch.cuda.is_available() else {})
        for device, pairs in devices.items():
            kwargs = {"backend": "raft_small", "device": device, "batch_size": args.batch_size}
            rows.append(("raft_small", device, *measure(clips(pairs), raft_weights=weights, **kwargs)))

    print(f"{SIZE}x{SIZE} frames, grid {GRID}, top-{TOPK}; torch threads: {torch.get_num_threads()}")
    print(f"{'backend':<12}{'device':<8}{'pairs':>8}{'seconds':>10}{'pairs/s':>10}")
    for backend, device, pairs, seconds in rows:
        print(f"{backend:<12}{device:<8}{pairs:>8}{seconds:>10.2f}{pairs / seconds:>10.1f}")


if __name__ == "__main__":
    main()
