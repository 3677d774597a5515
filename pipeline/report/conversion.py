"""Stage `convert_voices`: voice conversion by swapping z_f (DSVAE Fig. 6).

Two test utterances of different speakers, A and B, are encoded segment by segment. Each one's speaker
embedding is the mean of z_f over its segments; A's dynamic latents decoded with B's embedding say A's
words in B's voice, and the other way round. The four feature sequences (A, B, A as B, B as A) are turned
into WAVs with Griffin-Lim phase and drawn as spectrograms in one PNG.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from pipeline.config import FromConfig, resolve_device  # noqa: E402
from pipeline.data import h5io  # noqa: E402
from pipeline.data.audio import features_to_audio  # noqa: E402
from pipeline.data.clips import load_clips  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402
from pipeline.train.checkpoint import load_model  # noqa: E402

logger = logging.getLogger(__name__)

NAMES = ("a", "b", "a_as_b", "b_as_a")


def pick_pair(utterance: np.ndarray, speaker: np.ndarray) -> tuple[int, int]:
    """The first test utterance with the most segments, and the longest one of another speaker."""
    ids, counts = np.unique(utterance, return_counts=True)
    speaker_of = dict(zip(utterance, speaker, strict=True))
    order = ids[np.argsort(-counts, kind="stable")]
    first = int(order[0])
    second = next(int(u) for u in order if speaker_of[u] != speaker_of[first])
    return first, second


@torch.no_grad()
def swap_speakers(model, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Segments a (S_a, T, D) and b (S_b, T, D) -> the four feature sequences, each (S * T, D)."""
    (static_a, dynamic_a), (static_b, dynamic_b) = model.encode(a), model.encode(b)
    voice_a = static_a.mean.mean(0, keepdim=True)  # (1, D_f)
    voice_b = static_b.mean.mean(0, keepdim=True)

    def decode(voice: torch.Tensor, dynamic: torch.Tensor) -> torch.Tensor:
        frames = model.decode(voice.expand(len(dynamic.mean), -1), dynamic.mean)  # (S, T, D)
        return frames.flatten(0, 1)

    return {
        "a": a.flatten(0, 1),
        "b": b.flatten(0, 1),
        "a_as_b": decode(voice_b, dynamic_a),
        "b_as_a": decode(voice_a, dynamic_b),
    }


def convert_voices(
    *, model: str, dataset: str, figure: str, wav_dir: str, device: str = FromConfig("device")
) -> None:
    """Write `wav_dir/{a,b,a_as_b,b_as_a}.wav` and the spectrogram PNG `figure`."""
    device = resolve_device(device)
    net = load_model(model, device)
    data = load_clips(dataset, "test")
    utterance, speaker = data.targets["sequence_id"].numpy(), data.targets["speaker"].numpy()
    first, second = pick_pair(utterance, speaker)
    segments = {u: data.frames[torch.from_numpy(utterance == u)].to(device) for u in (first, second)}
    sequences = swap_speakers(net, segments[first], segments[second])
    rate = int(h5io.read_attrs(dataset)["sample_rate"])
    speakers = dict(enumerate(next(f for f in data.factors if f.name == "speaker").classes))
    voice = {"a": speaker[utterance == first][0], "b": speaker[utterance == second][0]}
    titles = {
        "a": f"A ({speakers[voice['a']]})",
        "b": f"B ({speakers[voice['b']]})",
        "a_as_b": f"A's content, B's z_f ({speakers[voice['b']]})",
        "b_as_a": f"B's content, A's z_f ({speakers[voice['a']]})",
    }
    Path(wav_dir).mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    for ax, name in zip(axes, NAMES, strict=True):
        frames = sequences[name].float().cpu().numpy()  # (F, D)
        with atomic_path(Path(wav_dir) / f"{name}.wav") as tmp:
            soundfile.write(tmp, features_to_audio(frames, dataset), rate, format="WAV")
        ax.imshow(frames.T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(titles[name], fontsize=9)
        ax.set_xlabel("frame (10 ms)")
    axes[0].set_ylabel("feature bin (standardised)")
    fig.tight_layout()
    with atomic_path(figure) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    logger.info("wrote %s and %s/*.wav", figure, wav_dir)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(convert_voices)
