"""Throughput of the HDF5 clip loader (clips per second) against the training step it feeds.

    python benchmarks/bench_loader.py [--dataset PATH [--labels PATH] [--split S]] [--clips N]
        [--batch-size B] [--repeats R] [--device cpu|cuda] [--threads N] [--train-rate R | --train-steps N]

Without --dataset it writes a synthetic Sprites-shaped file to a temporary folder with
`pipeline.data.h5io.write_dataset` (one gzip-4 chunk per clip, as `build_sprites` writes them): N clips of
8 x 64 x 64 x 3, each a black frame with one textured figure drifting a few pixels per frame (as sparse and
as compressible as the real Sprites file), the same factors as Sprites, and a label file with random
`flow_topk` and `flow_magnitude`, as `label_flow` writes. It measures
  (a) `pipeline.data.clips.load_clips`: read, decompress a whole split (frames, factors, labels) into memory,
      paid once per training run;
  (b) `ClipSet.batches(B, shuffle=True, drop_last=True)`: one epoch of batches, `to_input` included (on the
      device, as in training), paid every step;
  (c) the training step of bench_train.py (at the quick preset's sizes), unless --train-rate is
      given, and prints (b) / (c) against the target of >= 10x.
Times are medians over --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from bench_train import train_rate, training_step  # noqa: E402

from pipeline.data import h5io  # noqa: E402
from pipeline.data.clips import load_clips  # noqa: E402

T, SIZE, GRID, TOPK = 8, 64, 8, 3
FIGURE = (44, 28)  # rows, columns of the synthetic figure's ellipse
SPECKLE = 0.45  # share of figure pixels off their band's colour
# FIGURE and SPECKLE are set so the file matches results/data/sprites.h5: 23% lit pixels, gzip ratio 24x.
STATIC_FACTORS = ("skin", "pants", "top", "hair")  # 6 classes each, as in Sprites
ACTION_CLASSES = 9  # 3 actions x 3 directions
TARGET = 10.0  # the loader should produce batches at least this many times faster than training consumes them


def synthetic_clips(n: int, seed: int = 0) -> np.ndarray:
    """(N, T, 64, 64, 3) uint8 clips: black frames, one elliptic figure of 6 palette colours in horizontal
    bands with speckle (shading), moving by a random step of up to 1 pixel down and 2 across per frame."""
    rng = np.random.default_rng(seed)
    h, w = FIGURE
    rows, cols = np.mgrid[:h, :w]
    mask = ((rows - (h - 1) / 2) / (h / 2)) ** 2 + (
        (cols - (w - 1) / 2) / (w / 2)
    ) ** 2 <= 1  # (h, w) ellipse
    out = np.zeros((n, T, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
        bands = np.repeat(rng.integers(0, 6, h // 4), 4)[:, None]  # (h, 1): hair, top, pants, shoes...
        index = np.where(rng.random((h, w)) < SPECKLE, rng.integers(0, 6, (h, w)), bands)  # (h, w)
        figure = palette[index] * mask[..., None]  # (h, w, 3)
        start = rng.integers((8, 12), (17, 29))
        step = rng.integers((-1, -2), (2, 3))
        for t in range(T):
            y, x = np.clip(start + t * step, 0, (SIZE - h, SIZE - w))
            out[i, t, y : y + h, x : x + w] = figure
    return out


def write_synthetic(folder: Path, clips: int) -> tuple[Path, Path]:
    """A dataset file and a label file in `folder`, laid out as the workflow writes them."""
    rng = np.random.default_rng(1)
    factors = [h5io.Factor("action", "dynamic", tuple(f"a{i}" for i in range(ACTION_CLASSES)))]
    factors += [h5io.Factor(name, "static", tuple(f"{name}{i}" for i in range(6))) for name in STATIC_FACTORS]
    split = {
        "frames": synthetic_clips(clips),
        "sequence_id": np.arange(clips),
        "action": rng.integers(0, ACTION_CLASSES, clips),
        **{name: rng.integers(0, 6, clips) for name in STATIC_FACTORS},
    }
    dataset, labels = folder / "synthetic.h5", folder / "synthetic_flow.h5"
    h5io.write_dataset(dataset, name="synthetic", factors=factors, splits={"train": split})
    cells = rng.random((clips, T, GRID * GRID)).argsort(axis=-1)[..., :TOPK].astype(np.int16)  # (N, T, k)
    magnitude = rng.random((clips, T, GRID, GRID), dtype=np.float32)  # (N, T, G, G)
    h5io.write_labels(
        labels,
        attrs={"dataset": "synthetic", "labeler": "random"},
        labels={"train": {"flow_topk": cells, "flow_magnitude": magnitude}},
    )
    return dataset, labels


def time_load(dataset: Path, labels: Path | None, split: str, repeats: int) -> tuple[int, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        clips = load_clips(dataset, split, labels=labels)
        seconds.append(time.perf_counter() - started)
    return len(clips), statistics.median(seconds)


def time_batches(dataset: Path, labels: Path | None, split: str, batch_size: int, device: str, repeats: int):
    clips = load_clips(dataset, split, labels=labels)
    generator = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(repeats):
        count = 0
        started = time.perf_counter()
        for x, _targets in clips.batches(
            batch_size, shuffle=True, generator=generator, device=device, drop_last=True
        ):
            count += len(x)
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", type=Path, default=None, help="a dataset file (default: a synthetic one)"
    )
    parser.add_argument("--labels", type=Path, default=None, help="its label file, loaded with it when given")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=2000, help="clips in the synthetic file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 2 on the CPU)")
    parser.add_argument(
        "--train-rate", type=float, default=None, help="training sequences/s (default: measure)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=5, help="timed steps when measuring the training rate"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.labels is not None and args.dataset is None:
        parser.error("--labels needs --dataset")
    return args


def main() -> None:
    args = parse_args()
    threads = args.threads or (2 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            started = time.perf_counter()
            dataset, labels = write_synthetic(Path(tmp), args.clips)
            source = f"synthetic, written in {time.perf_counter() - started:.1f} s"
        else:
            dataset, labels = args.dataset, args.labels
            source = "given"
        with h5py.File(dataset, "r", locking=False) as f:
            stored = f[args.split]["frames"].id.get_storage_size()  # bytes of compressed chunks
        clips, load_s = time_load(dataset, labels, args.split, args.repeats)
        batch_rate = time_batches(dataset, labels, args.split, args.batch_size, args.device, args.repeats)
    raw = clips * T * SIZE * SIZE * 3
    if args.train_rate is not None:
        rate, about = args.train_rate, "given with --train-rate"
    else:
        rate = train_rate(
            preset="quick",
            device=args.device,
            threads=threads,
            batch_size=args.batch_size,
            steps=args.train_steps,
        )
        step = training_step(args.device)
        about = f"bench_train.py {step}, preset quick, median of {args.train_steps} steps"

    threads = threads or torch.get_num_threads()
    print(f"dataset {dataset} ({source}): split '{args.split}', {clips} clips")
    print(f"  frames: {stored / 1e6:.1f} MB stored, {raw / stored:.1f}x smaller than raw")
    print(f"{args.device}, {threads} threads; medians of {args.repeats} repeats")
    print(
        f"(a) load_clips, read + decompress the split: {load_s:.2f} s, {clips / load_s:.0f} clips/s "
        f"({raw / load_s / 1e6:.0f} MB/s of frames), once per run"
    )
    batches = f"ClipSet.batches({args.batch_size}, shuffle=True)"
    print(f"(b) {batches} with to_input: {batch_rate:.0f} clips/s, every step")
    print(f"(c) training: {rate:.1f} sequences/s ({about})")
    print(
        f"loader / training: (b) {batch_rate / rate:.0f}x, (a) {clips / load_s / rate:.0f}x; "
        f"batches take {100 * rate / batch_rate:.2f}% of a training epoch"
    )
    verdict = "met" if batch_rate / rate >= TARGET else "NOT met"
    print(f"target: batches at >= {TARGET:.0f}x the training rate: {verdict}")


if __name__ == "__main__":
    main()
