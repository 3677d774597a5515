"""Throughput of the procedural dataset generators (sequences per second): rendering alone, and the build.

    python benchmarks/bench_build.py [--dataset NAME ...] [--sequences N] [--repeats R] [--threads N]
                                     [--mnist-dir resources/mnist]

For each generator in GENERATORS it times
  (a) render: drawing and rendering N clips into memory, what the build does before writing;
  (b) render + write: the whole build function, N clips split 3:1 into train and test, written to a
      temporary HDF5 file (gzip level 4, as the workflow writes it).
Times are medians over --repeats; seeds differ between repeats. A new generator is one more entry in
GENERATORS. SMMNIST needs MNIST fetched by the download stage (`--mnist-dir`, e.g. `snakemake
resources/mnist/SHA256SUMS --config mirror=../shared/data`); its render time includes scaling the digits,
its build time reading the IDX archives.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from pipeline.config import load  # noqa: E402
from pipeline.data import dsprites, smmnist  # noqa: E402
from pipeline.stage import config_arguments  # noqa: E402

WORKFLOW_CONFIG = load()  # config.yaml: every generator setting the benchmark does not vary


@dataclass(frozen=True)
class Generator:
    render: Callable[[int, int], object]  # (sequences, seed) -> clips in memory
    build: Callable[[Path, int, int], object]  # (output, sequences, seed) -> writes the dataset file


def _render_dsprites(n: int, seed: int) -> object:
    rng = np.random.default_rng(seed)
    return dsprites.generate_split(rng, n, frames=dsprites.N_FRAMES, image_size=dsprites.IMAGE_SIZE)


def _build_dsprites(output: Path, n: int, seed: int) -> object:
    test = max(n // 4, 1)
    sizes = {"train_sequences": n - test, "test_sequences": test, "judge_train_sequences": 0, "seed": seed}
    return dsprites.build_dsprites(**{**config_arguments(dsprites.build_dsprites, WORKFLOW_CONFIG), **sizes})


def smmnist_generator(mnist_dir: Path) -> Generator:
    images, labels = smmnist.load_mnist(mnist_dir, "test")

    def render(n: int, seed: int) -> object:
        return smmnist.generate_split(
            images, labels, n, smmnist.MovingDigitsSpec(), np.random.default_rng(seed)
        )

    def build(output: Path, n: int, seed: int) -> object:
        test = max(n // 4, 1)
        sizes = {"train_sequences": n - test, "test_sequences": test, "seed": seed}
        defaults = config_arguments(smmnist.build_smmnist, WORKFLOW_CONFIG)
        return smmnist.build_smmnist(**{**defaults, **sizes}, mnist_dir=mnist_dir, output=output)

    return Generator(render=render, build=build)


# name -> the generator, made from the command-line arguments (SMMNIST reads MNIST first)
GENERATORS: dict[str, Callable[[argparse.Namespace], Generator]] = {
    "dsprites": lambda args: Generator(render=_render_dsprites, build=_build_dsprites),
    "smmnist": lambda args: smmnist_generator(args.mnist_dir),
}


def median_seconds(run: Callable[[int], object], repeats: int) -> float:
    times = []
    for seed in range(repeats):
        started = time.perf_counter()
        run(seed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", choices=sorted(GENERATORS), default=sorted(GENERATORS))
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's choice)")
    parser.add_argument(
        "--mnist-dir", type=Path, default=Path("resources/mnist"), help="fetched MNIST folder"
    )
    args = parser.parse_args()
    if args.sequences < 2:
        parser.error("--sequences: at least 2 (one train and one test clip)")
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    n = args.sequences
    print(f"{n} sequences per run, medians of {args.repeats} runs, OpenCV threads {cv2.getNumThreads()}")
    print(f"{'dataset':<10} {'stage':<16} {'s':>7} {'seq/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.dataset:
            generator, output = GENERATORS[name](args), Path(tmp) / f"{name}.h5"
            stages = {
                "render": lambda seed, g=generator: g.render(n, seed),
                "render + write": lambda seed, g=generator, out=output: g.build(out, n, seed),
            }
            for stage, run in stages.items():
                seconds = median_seconds(run, args.repeats)
                print(f"{name:<10} {stage:<16} {seconds:>7.2f} {n / seconds:>8.0f}")


if __name__ == "__main__":
    main()
