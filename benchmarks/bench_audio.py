"""Throughput of speech feature extraction (segments per second), as `build_audio` computes it.

    python benchmarks/bench_audio.py [--fsdd DIR] [--utterances N] [--repeats R]

Per utterance: `frame_features` (STFT, and the mel filter bank for logmel), `frame_rms_db` and
`cut_segments` into T = 20 frame segments, for both feature kinds. The input is FSDD's recordings (8 kHz)
when `--fsdd` names a folder holding `recordings/` (default: the shared mirror, ../shared/data/fsdd),
else synthetic 0.5 s tone-and-noise utterances at 8 kHz; TIMIT-rate (16 kHz) synthetic utterances are
timed too. File reading is left out (soundfile reads FSDD's 3000 files in ~0.6 s). Single-threaded:
`build_audio` runs on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from pipeline.data.audio import FeatureSettings, cut_segments, frame_features, frame_rms_db  # noqa: E402

DEFAULT_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


def synthetic_utterances(n: int, rate: int, seconds: float = 0.5, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return [
        (0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.01 * rng.standard_normal(len(t))).astype(
            np.float32
        )
        for _ in range(n)
    ]


def fsdd_utterances(folder: Path, n: int) -> list[np.ndarray]:
    import soundfile

    return [soundfile.read(p, dtype="float32")[0] for p in sorted(folder.glob("recordings/*.wav"))[:n]]


def extract(utterances: list[np.ndarray], rate: int, settings: FeatureSettings) -> int:
    segments = 0
    for samples in utterances:
        feats = cut_segments(frame_features(samples, rate, settings), settings)
        cut_segments(frame_rms_db(samples, rate, settings), settings)
        segments += len(feats)
    return segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="folder holding FSDD's recordings/")
    parser.add_argument("--utterances", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    inputs = {"synthetic 16 kHz, 0.5 s": (synthetic_utterances(args.utterances, 16000), 16000)}
    if (args.fsdd / "recordings").is_dir():
        inputs["FSDD 8 kHz"] = (fsdd_utterances(args.fsdd, args.utterances), 8000)
    else:
        inputs["synthetic 8 kHz, 0.5 s"] = (synthetic_utterances(args.utterances, 8000), 8000)
    print(f"{'input':<26} {'kind':<9} {'utterances':>10} {'segments':>9} {'seconds':>8} {'segments/s':>11}")
    for label, (utterances, rate) in inputs.items():
        for kind in ("logmel", "spectrum"):
            settings = FeatureSettings(kind=kind)
            extract(utterances[:5], rate, settings)  # warm-up: librosa's first calls compile with numba
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                segments = extract(utterances, rate, settings)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            print(
                f"{label:<26} {kind:<9} {len(utterances):>10} {segments:>9} {seconds:>8.2f} "
                f"{segments / seconds:>11.0f}"
            )


if __name__ == "__main__":
    main()
