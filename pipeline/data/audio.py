"""Stage `build_audio`: speech corpora -> spectral feature segments in the seqdis HDF5 layout.

Corpora:
- FSDD (Free Spoken Digit Dataset; 6 speakers, 8 kHz): `recordings/{digit}_{speaker}_{index}.wav`. With six
  speakers there is no speaker held out: its README's split holds out utterances (indices 0-4 test,
  5-49 train), so every test speaker is also a training speaker, and its EERs are not TIMIT's.
- TIMIT (LDC93S1, licensed, never downloaded): a user-given folder in the standard layout
  `{TRAIN,TEST}/DR{1-8}/{speaker}/{utterance}.WAV` (NIST SPHERE) with `.PHN`, `.WRD` and `.TXT` beside
  each. Train = TRAIN; test = the 24-speaker core test set. The SA sentences (read by every speaker)
  are left out of both, as TIMIT recipes usually do (Kaldi's among them).

Features as the papers use them (S3VAE: 80-d log mel filter bank; DSVAE: 200-d log-magnitude spectrum),
one frame every `hop_ms`, each utterance cut into segments of `segment_frames` frames (S3VAE and DSVAE:
200 ms, T = 20) every `segment_hop` frames; utterances shorter than one segment are dropped (logged).
Features are standardised per dimension with the training split's mean and std, kept in the root attrs
`feature_mean` / `feature_std` so that decoded features can be turned back into audio. Each frame's RMS
level (dB re full scale) is kept as the trajectory `rms_db`, the input of the silence labels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import soundfile

from pipeline.config import FromConfig
from pipeline.data import h5io
from pipeline.data.download import refetch_hint
from pipeline.data.sphere import read_sphere

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("logmel", "spectrum")
_LOG_FLOOR = 1e-6  # keeps log() finite in digital silence, ~ -120 dB re full scale power

# The core test set (TIMIT's documentation, as Kaldi's conf/test_spk.list): 2 men and 1 woman per
# dialect region, 24 speakers.
TIMIT_CORE_TEST = (
    "MDAB0 MWBT0 FELC0 MTAS1 MWEW0 FPAS0 MJMP0 MLNT0 FPKT0 MLLL0 MTLS0 FJLM0 "
    "MBPM0 MKLT0 FNLP0 MCMJ0 MJDH0 FMGD0 MGRT0 MNJM0 FDHC0 MJLN0 MPAM0 FMLD0"
).split()
TIMIT_COMPANIONS = (".PHN", ".WRD", ".TXT")
FSDD_TEST_INDICES = range(5)  # the FSDD README's split
_FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


@dataclass(frozen=True)
class FeatureSettings:
    kind: str = "logmel"  # "logmel" (S3VAE) or "spectrum" (DSVAE)
    n_mels: int = 80
    spectrum_bins: int = 200  # DSVAE's 200-d log-magnitude spectrum: n_fft = 2 * (bins - 1)
    hop_ms: float = 10.0
    win_ms: float = 25.0
    segment_frames: int = 20  # T: 200 ms at a 10 ms hop
    segment_hop: int = 20


@dataclass(frozen=True)
class Utterance:
    name: str  # unique within the corpus, e.g. "george_7_32" or "DR1_MDAB0_SI1039"
    split: str
    speaker: str
    static: dict[str, str]  # other per-utterance factors: FSDD's digit, TIMIT's dialect region
    samples: np.ndarray  # float32 in [-1, 1]
    sample_rate: int


# --- features ------------------------------------------------------------------------------------
def stft_params(settings: FeatureSettings, sample_rate: int) -> dict[str, int]:
    """n_fft, hop and window length in samples.

    The spectrum's n_fft is fixed by its bin count (398 for 200 bins: a 25 ms frame at 16 kHz, 50 ms at
    8 kHz, zero-padded beyond `win_ms`). The mel filter bank uses the next power of two above 64 ms, so
    that even at 8 kHz each of the 80 narrow low-frequency filters covers an FFT bin.
    """
    hop = round(sample_rate * settings.hop_ms / 1000)
    win = round(sample_rate * settings.win_ms / 1000)
    if settings.kind == "spectrum":
        n_fft = 2 * (settings.spectrum_bins - 1)
    elif settings.kind == "logmel":
        n_fft = 2 ** math.ceil(math.log2(sample_rate * 0.064))
    else:
        raise ValueError(f"unknown feature kind '{settings.kind}': use one of {FEATURE_KINDS}")
    return {"n_fft": n_fft, "hop_length": hop, "win_length": min(win, n_fft)}


def feature_dim(settings: FeatureSettings) -> int:
    return settings.n_mels if settings.kind == "logmel" else settings.spectrum_bins


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Built once per setting: rebuilding it per utterance took half of the extraction time."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)


def frame_features(samples: np.ndarray, sample_rate: int, settings: FeatureSettings) -> np.ndarray:
    """Log features of every frame, (F, D) float32: frame f is centred on sample f * hop."""
    p = stft_params(settings, sample_rate)
    magnitude = np.abs(librosa.stft(samples, **p))  # (n_fft // 2 + 1, F)
    if settings.kind == "logmel":
        mel = _mel_basis(sample_rate, p["n_fft"], settings.n_mels) @ magnitude**2  # (D, F)
        return np.log(mel + _LOG_FLOOR).T.astype(np.float32)
    return np.log(magnitude + _LOG_FLOOR).T.astype(np.float32)


def frame_rms_db(samples: np.ndarray, sample_rate: int, settings: FeatureSettings) -> np.ndarray:
    """Each frame's RMS level in dB re full scale, (F,), on the same frame grid as `frame_features`."""
    p = stft_params(settings, sample_rate)
    rms = librosa.feature.rms(y=samples, frame_length=p["win_length"], hop_length=p["hop_length"])[0]
    return (20 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


def segment_starts(n_frames: int, settings: FeatureSettings) -> range:
    return range(0, n_frames - settings.segment_frames + 1, settings.segment_hop)


def cut_segments(frames: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """(F, ...) -> (S, T, ...): the segments of one utterance, S = 0 when it is shorter than T."""
    T = settings.segment_frames
    starts = segment_starts(len(frames), settings)
    return np.stack([frames[s : s + T] for s in starts]) if starts else np.empty((0, T, *frames.shape[1:]))


# --- corpora -------------------------------------------------------------------------------------
def fsdd_utterances(root: str | os.PathLike) -> Iterator[Utterance]:
    """Every FSDD recording under `root/recordings`, split by its index (0-4 test)."""
    folder = Path(root) / "recordings"
    paths = sorted(folder.glob("*.wav"))
    if not paths:
        raise FileNotFoundError(
            f"{folder} holds no .wav files: fetch FSDD first (snakemake resources/fsdd/SHA256SUMS)"
        )
    for path in paths:
        match = _FSDD_NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: not an FSDD name ({{digit}}_{{speaker}}_{{index}}.wav)")
        digit, speaker, index = match.groups()
        try:
            samples, rate = soundfile.read(path, dtype="float32")
        except (RuntimeError, OSError) as err:  # soundfile.LibsndfileError is a RuntimeError
            raise ValueError(f"{path} is not a readable WAV file ({err}): {refetch_hint(root)}") from err
        split = "test" if int(index) in FSDD_TEST_INDICES else "train"
        yield Utterance(f"{speaker}_{digit}_{index}", split, speaker, {"digit": digit}, samples, rate)


def _timit_folder(root: Path, name: str) -> Path:
    """TIMIT's folders are upper case on the LDC discs and lower case in some copies: accept both."""
    for candidate in (root / name, root / name.lower()):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"{root} has no {name}/ folder: point `timit.root` at the TIMIT corpus (LDC93S1, licensed from the "
        "Linguistic Data Consortium) in its standard layout, {TRAIN,TEST}/DR1-8/<speaker>/<utterance>.WAV"
    )


def _timit_speaker_utterances(speaker_dir: Path, split: str) -> Iterator[Utterance]:
    region = speaker_dir.parent.name.upper()
    speaker = speaker_dir.name.upper()
    for wav in sorted(p for p in speaker_dir.iterdir() if p.suffix.upper() == ".WAV"):
        if wav.stem.upper().startswith("SA"):
            continue
        missing = [
            ext
            for ext in TIMIT_COMPANIONS
            if not any(wav.with_suffix(e).exists() for e in (ext, ext.lower()))
        ]
        if missing:
            raise FileNotFoundError(
                f"{wav}: its {', '.join(missing)} file(s) are missing beside it; TIMIT ships each "
                "utterance as .WAV, .PHN, .WRD and .TXT: copy the complete corpus (LDC93S1)"
            )
        audio = read_sphere(wav)
        samples = audio.samples.astype(np.float32) / 32768.0
        yield Utterance(
            f"{region}_{speaker}_{wav.stem.upper()}",
            split,
            speaker,
            {"dialect": region},
            samples,
            audio.sample_rate,
        )


def timit_utterances(root: str | os.PathLike) -> Iterator[Utterance]:
    """TRAIN (all speakers) and the core test set of TEST, SA sentences excluded."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"TIMIT folder {root} does not exist: set `timit.root` to your copy of TIMIT (LDC93S1, licensed "
            "from the Linguistic Data Consortium, https://catalog.ldc.upenn.edu/LDC93S1)"
        )
    train, test = _timit_folder(root, "TRAIN"), _timit_folder(root, "TEST")
    core = {d.name.upper(): d for d in test.glob("*/*") if d.name.upper() in TIMIT_CORE_TEST}
    missing = sorted(set(TIMIT_CORE_TEST) - set(core))
    if missing:
        raise FileNotFoundError(
            f"{test} lacks {len(missing)} of the 24 core test speakers ({' '.join(missing)}): TIMIT's "
            "TEST/DR*/<speaker>/ folders must be complete (LDC93S1)"
        )
    for speaker_dir in sorted(d for d in train.glob("*/*") if d.is_dir()):
        yield from _timit_speaker_utterances(speaker_dir, "train")
    for speaker in TIMIT_CORE_TEST:
        yield from _timit_speaker_utterances(core[speaker], "test")


CORPORA = {"fsdd": fsdd_utterances, "timit": timit_utterances}


# --- the stage -----------------------------------------------------------------------------------
def segment_corpus(utterances, settings: FeatureSettings):
    """Feature and RMS segments of every utterance long enough for one segment, per split, with its
    utterance number and labels: (parts, utterance names, sample rates seen, utterances dropped)."""
    parts: dict[str, dict[str, list]] = {}
    names: list[str] = []
    dropped = 0
    rates = set()
    for utt in utterances:
        rates.add(utt.sample_rate)
        feats = cut_segments(frame_features(utt.samples, utt.sample_rate, settings), settings)
        if len(feats) == 0:
            dropped += 1
            continue
        rms = cut_segments(frame_rms_db(utt.samples, utt.sample_rate, settings), settings)
        part = parts.setdefault(utt.split, {"features": [], "rms_db": [], "utterance": [], "labels": []})
        part["features"].append(feats)
        part["rms_db"].append(rms)
        part["utterance"].append(np.full(len(feats), len(names)))
        part["labels"].append({"speaker": utt.speaker, **utt.static})
        names.append(utt.name)
    return parts, names, rates, dropped


def build_audio(
    *,
    dataset: str,
    root: str | os.PathLike,
    output: str | os.PathLike,
    features: dict | FeatureSettings = FromConfig("audio.features"),
) -> None:
    """Read corpus `dataset` ("fsdd" or "timit") from `root`; write its feature segments to `output`."""
    if dataset not in CORPORA:
        raise ValueError(f"unknown audio dataset '{dataset}': use one of {sorted(CORPORA)}")
    settings = features if isinstance(features, FeatureSettings) else FeatureSettings(**features)
    parts, names, rates, dropped = segment_corpus(CORPORA[dataset](root), settings)
    if len(rates) != 1:
        raise ValueError(f"{root}: recordings differ in sample rate ({sorted(rates)}); resample them to one")
    if "train" not in parts or "test" not in parts:
        raise ValueError(f"{root}: no {'train' if 'train' not in parts else 'test'} utterance is long enough")
    factor_names = list(parts["train"]["labels"][0])
    classes = {f: sorted({lab[f] for part in parts.values() for lab in part["labels"]}) for f in factor_names}
    factors = [h5io.Factor(f, "static", tuple(classes[f])) for f in factor_names]
    splits = {}
    for split, part in parts.items():
        counts = [len(f) for f in part["features"]]
        splits[split] = {
            "features": np.concatenate(part["features"]),
            "rms_db": np.concatenate(part["rms_db"]),
            "sequence_id": np.concatenate(part["utterance"]),
            **{
                f: np.repeat([classes[f].index(lab[f]) for lab in part["labels"]], counts)
                for f in factor_names
            },
        }
        logger.info("%s/%s: %d utterances, %d segments", dataset, split, len(counts), sum(counts))
    logger.info("%d utterances shorter than %d frames dropped", dropped, settings.segment_frames)
    train = splits["train"]["features"]
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1)) + 1e-5
    for arrays in splits.values():
        arrays["features"] = (arrays["features"] - mean) / std
    h5io.write_dataset(
        output,
        name=dataset,
        factors=factors,
        splits=splits,
        trajectories=("rms_db",),
        attrs={
            "sample_rate": rates.pop(),
            "features": json.dumps(asdict(settings)),
            "feature_mean": mean.astype(np.float32),
            "feature_std": std.astype(np.float32),
            "utterances": json.dumps(names),
        },
    )
    logger.info("wrote %s", output)


def read_feature_settings(path: str | os.PathLike) -> FeatureSettings:
    return FeatureSettings(**json.loads(h5io.read_attrs(path)["features"]))


def features_to_audio(features: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Standardised features (F, D) of dataset `path` back to a waveform, phase by Griffin-Lim."""
    attrs = h5io.read_attrs(path)
    settings = read_feature_settings(path)
    rate = int(attrs["sample_rate"])
    p = stft_params(settings, rate)
    logs = features * attrs["feature_std"] + attrs["feature_mean"]  # (F, D)
    if settings.kind == "logmel":
        power = np.maximum(np.exp(logs) - _LOG_FLOOR, 0).T
        return librosa.feature.inverse.mel_to_audio(power, sr=rate, **p)
    magnitude = np.maximum(np.exp(logs) - _LOG_FLOOR, 0).T
    return librosa.griffinlim(magnitude, **p)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(build_audio)
