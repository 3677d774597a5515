"""Speech: SPHERE reader, features and frame rate, silence labels, TIMIT ingest from a fixture folder in the
real layout, FSDD from the mirror, EER and verification, FHVAE, S3VAE on feature vectors, table 3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_adam_steps_lower, call_with_config

import models
from pipeline.config import load
from pipeline.data import h5io
from pipeline.data.audio import (
    TIMIT_CORE_TEST,
    FeatureSettings,
    build_audio,
    cut_segments,
    features_to_audio,
    frame_features,
    frame_rms_db,
    stft_params,
)
from pipeline.data.download import fetch_source
from pipeline.data.sphere import SphereError, read_sphere, write_sphere
from pipeline.evaluate.verification import (
    cosine_trials,
    equal_error_rate,
    evaluate_verification,
    utterance_means,
    verification_eers,
)
from pipeline.files import file_sha256
from pipeline.labels.silence import label_silence, silence_labels
from pipeline.report.conversion import convert_voices
from pipeline.report.tables import make_table3
from pipeline.train.audio import train_audio_model
from pipeline.train.checkpoint import load_model
from pipeline.train.families import audio_variant

REPO = Path(__file__).resolve().parents[1]


def tone(seconds: float, rate: int, hz: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# --- SPHERE --------------------------------------------------------------------------------------
def test_sphere_round_trip(tmp_path: Path):
    samples = (np.arange(-500, 500) * 30).astype(np.int16)
    write_sphere(tmp_path / "SI1.WAV", samples, 16000)
    raw = (tmp_path / "SI1.WAV").read_bytes()
    assert raw.startswith(b"NIST_1A") and len(raw) == 1024 + 2 * len(samples)
    audio = read_sphere(tmp_path / "SI1.WAV")
    np.testing.assert_array_equal(audio.samples, samples)
    assert audio.sample_rate == 16000
    assert audio.header["sample_byte_format"] == "01" and audio.header["sample_count"] == len(samples)


def test_sphere_reader_rejects_other_files(tmp_path: Path):
    (tmp_path / "x.wav").write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(SphereError, match="not a NIST SPHERE file"):
        read_sphere(tmp_path / "x.wav")
    write_sphere(tmp_path / "y.wav", np.zeros(10, np.int16), 16000)
    shortened = (tmp_path / "y.wav").read_bytes().replace(b"sample_coding -s3 pcm", b"sample_coding -s3 shn")
    (tmp_path / "y.wav").write_bytes(shortened)
    with pytest.raises(SphereError, match="sph2pipe"):
        read_sphere(tmp_path / "y.wav")


# --- features and silence ------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize(("kind", "dim"), [("logmel", 80), ("spectrum", 200)])
def test_feature_shapes_and_frame_rate(rate: int, kind: str, dim: int):
    settings = FeatureSettings(kind=kind)
    assert stft_params(settings, rate)["hop_length"] == rate // 100  # one frame every 10 ms
    samples = tone(1.0, rate, 440.0)
    feats = frame_features(samples, rate, settings)
    assert feats.shape == (101, dim) and feats.dtype == np.float32  # 1 s -> 100 hops + 1 centred frame
    assert frame_rms_db(samples, rate, settings).shape == (101,)  # the same frame grid as the features
    segments = cut_segments(feats, settings)
    assert segments.shape == (5, 20, dim)  # 200 ms segments, T = 20
    np.testing.assert_array_equal(segments[1], feats[20:40])


def test_spectrum_peak_is_at_the_tone():
    rate, settings = 8000, FeatureSettings(kind="spectrum")
    feats = frame_features(tone(0.5, rate, 1000.0), rate, settings)
    bin_hz = rate / stft_params(settings, rate)["n_fft"]
    assert abs(feats[25].argmax() * bin_hz - 1000.0) <= bin_hz


def test_silence_threshold_on_tone_then_silence():
    rate, settings = 8000, FeatureSettings()
    quiet = (1e-4 * np.random.default_rng(0).standard_normal(rate // 2)).astype(np.float32)  # -80 dB
    samples = np.concatenate([tone(0.5, rate, 300.0), quiet])  # tone RMS 0.5/sqrt(2): -9 dB
    rms = frame_rms_db(samples, rate, settings)
    assert rms[10:40].min() > -10 and rms[60:].max() < -70
    labels = silence_labels(rms, threshold_db=-40.0)
    assert labels.dtype == np.uint8
    assert not labels[:48].any() and labels[53:].all()  # frames 49-52 straddle the boundary
    assert silence_labels(rms, threshold_db=0.0).all()  # every frame is below 0 dB re full scale


# --- TIMIT ingest --------------------------------------------------------------------------------
def _write_utterance(folder: Path, name: str, samples: np.ndarray) -> None:
    write_sphere(folder / f"{name}.WAV", np.round(samples * 32767).astype(np.int16), 16000)
    end = len(samples)
    (folder / f"{name}.PHN").write_text(f"0 {end // 2} h#\n{end // 2} {end} aa\n")
    (folder / f"{name}.WRD").write_text(f"0 {end} word\n")
    (folder / f"{name}.TXT").write_text(f"0 {end} Word.\n")


@pytest.fixture
def timit_root(tmp_path: Path) -> Path:
    """TIMIT's layout in miniature: TRAIN/DR*/<speaker>/ and the 24 core TEST speakers, SPHERE .WAV with
    .PHN/.WRD/.TXT; each speaker a tone of its own pitch followed by silence, 0.5 s per utterance."""
    root = tmp_path / "TIMIT"
    train = {"DR1": ["FCJF0", "MDPK0"], "DR2": ["FAEM0"]}
    core = {f"DR{1 + i // 3}": TIMIT_CORE_TEST[i - i % 3 : i - i % 3 + 3] for i in range(0, 24, 3)}
    for split, regions in (("TRAIN", train), ("TEST", core)):
        for region, speakers in regions.items():
            for k, speaker in enumerate(speakers):
                pitch = 150.0 + 40 * k + 10 * int(region[2:])
                for name in ("SA1", "SI1001", "SX11"):
                    speech = tone(0.3, 16000, pitch * (1.5 if name == "SX11" else 1.0))
                    samples = np.concatenate([speech, np.zeros(3200, np.float32)])
                    _write_utterance(root / split / region / speaker, name, samples)
    return root


def test_timit_fixture_through_ingest_features_and_labels(timit_root: Path, tmp_path: Path):
    data, labels = tmp_path / "timit.h5", tmp_path / "silence.h5"
    build_audio(dataset="timit", root=timit_root, output=data, features={"kind": "logmel"})
    attrs = h5io.read_attrs(data)
    assert attrs["modality"] == "audio" and int(attrs["sample_rate"]) == 16000
    names = json.loads(attrs["utterances"])
    assert len(names) == 2 * (3 + 24) and not any(n.endswith("_SA1") for n in names)  # SA excluded
    speakers = next(f for f in h5io.read_factors(data) if f.name == "speaker").classes
    test = h5io.read_split(data, "test")
    assert test.frames.shape == (48 * 2, 20, 80)  # 0.5 s = 51 frames -> 2 segments per utterance
    assert {speakers[i] for i in test.factors["speaker"]} == set(TIMIT_CORE_TEST)
    train = h5io.read_split(data, "train").frames
    assert abs(train.mean()) < 1e-3 and abs(train.std() - 1) < 1e-2  # standardised with train statistics

    label_silence(dataset=data, output=labels, threshold_db=-40.0)
    silent = h5io.read_labels(labels, "test")["silence"]
    assert silent.shape == (96, 20)
    assert not silent[0::2, 2:27].any()  # first segments: the tone (0.3 s = 30 frames)
    assert silent[1::2, 14:].all()  # second segments: frames 34-39, silence


@pytest.mark.parametrize("method", ["s3vae", "dsvae_full", "fhvae_a10"])
def test_every_audio_family_trains_scores_and_converts(method: str, timit_root: Path, tmp_path: Path):
    """The stages behind table3 on the TIMIT fixture with the smoke preset's sizes, one family at a time."""
    data, labels = tmp_path / "timit.h5", tmp_path / "silence.h5"
    build_audio(dataset="timit", root=timit_root, output=data, features={"kind": "logmel"})
    label_silence(dataset=data, output=labels, threshold_db=-40.0)
    config = load(overrides={"preset": "smoke", "audio": {"train": {"batch_size": 4}}})  # 12 train segments
    model = tmp_path / "model.pt"
    variant = audio_variant(config["audio"]["models"][method], config["variants"], dim=4)
    call_with_config(
        train_audio_model, config, dataset=str(data), labels=str(labels), output=str(model), variant=variant
    )
    assert load_model(model).config.static_dim == 4
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["inputs"]  # what resume checks
    assert recorded == {"dataset": file_sha256(data), "labels": file_sha256(labels)}
    scores = tmp_path / "verification.csv"
    call_with_config(
        evaluate_verification, config, model=str(model), dataset=str(data), output=str(scores), method=method
    )
    table = pd.read_csv(scores)
    assert table["feature"].tolist() == ["z_f", "z_1:T"] and table["eer"].between(0, 1).all()
    assert (table["utterances"] == 48).all()
    wavs = tmp_path / "conversion"
    call_with_config(
        convert_voices,
        config,
        model=str(model),
        dataset=str(data),
        figure=str(tmp_path / "c.png"),
        wav_dir=str(wavs),
    )
    assert sorted(p.name for p in wavs.iterdir()) == ["a.wav", "a_as_b.wav", "b.wav", "b_as_a.wav"]


def test_timit_errors_name_what_is_missing(timit_root: Path, tmp_path: Path):
    out = tmp_path / "t.h5"
    with pytest.raises(FileNotFoundError, match="LDC93S1"):
        build_audio(dataset="timit", root=tmp_path / "nowhere", output=out, features={})
    shutil.rmtree(timit_root / "TEST" / "DR3" / "MJMP0")
    with pytest.raises(FileNotFoundError, match="MJMP0"):
        build_audio(dataset="timit", root=timit_root, output=out, features={})
    (timit_root / "TRAIN" / "DR1" / "FCJF0" / "SI1001.PHN").unlink()
    shutil.rmtree(timit_root / "TEST")
    with pytest.raises(FileNotFoundError, match="TEST/ folder"):
        build_audio(dataset="timit", root=timit_root, output=out, features={})


def test_fsdd_from_the_mirror_holds_out_utterances(mirror: Path, tmp_path: Path):
    if not (mirror / "fsdd").is_dir():
        pytest.skip(f"the mirror {mirror} has no fsdd/ folder")
    fetched = tmp_path / "fsdd"
    fetch_source(source="fsdd", dest=fetched, mirror=mirror)
    subset = tmp_path / "subset" / "recordings"
    subset.mkdir(parents=True)
    for path in fetched.glob("recordings/[01]_*_[0-7].wav"):  # digits 0-1, indices 0-7: 96 files
        shutil.copy(path, subset / path.name)
    data = tmp_path / "fsdd.h5"
    build_audio(dataset="fsdd", root=subset.parent, output=data, features={"kind": "spectrum"})
    names = json.loads(h5io.read_attrs(data)["utterances"])
    for split in ("train", "test"):
        ids = np.unique(h5io.read_split(data, split).sequence_id)
        indices = {int(names[i].rsplit("_", 1)[1]) for i in ids}
        assert indices <= (set(range(5)) if split == "test" else {5, 6, 7})
    speakers = next(f for f in h5io.read_factors(data) if f.name == "speaker").classes
    assert len(speakers) == 6 and h5io.read_attrs(data)["frame_shape"].tolist() == [20, 200]
    waveform = features_to_audio(h5io.read_split(data, "test").frames[0], data)  # Griffin-Lim
    assert abs(len(waveform) - 19 * 80) <= 80 and np.isfinite(waveform).all()  # 19 hops of 10 ms at 8 kHz


# --- verification --------------------------------------------------------------------------------
def test_eer_on_hand_checked_cases():
    # Ranked: T T N T N N. Accepting the top 3 gives FAR 1/3 (one N of three) and FRR 1/3 (one T of three).
    assert equal_error_rate(
        np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([1, 1, 0, 1, 0, 0])
    ) == pytest.approx(1 / 3)
    assert equal_error_rate(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0])) == 0.0
    assert equal_error_rate(np.array([0.2, 0.3, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 1.0
    assert equal_error_rate(np.full(4, 0.5), np.array([1, 0, 1, 0])) == 0.5  # one tie: all or nothing
    with pytest.raises(ValueError, match="both"):
        equal_error_rate(np.ones(3), np.ones(3))


def test_utterance_means_and_cosine_trials():
    values = np.arange(12, dtype=float).reshape(3, 2, 2)  # 3 segments with a time axis
    ids, means = utterance_means(values, np.array([7, 3, 7]))
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(means, [[5, 6], [5, 6]])  # utterance 7: mean of frames 0,1 and 8,9...
    scores, targets = cosine_trials(np.array([[1.0, 0], [2.0, 0], [0, 1.0]]), np.array([0, 0, 1]))
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0])
    assert targets.tolist() == [True, False, False]


def test_verification_separates_a_speaker_latent_from_a_content_latent():
    rng = np.random.default_rng(0)
    utterance = np.repeat(np.arange(12), 3)  # 12 utterances x 3 segments
    speaker = utterance % 4
    static = np.eye(4)[speaker] * 5 + 0.1 * rng.standard_normal((36, 4))  # (N, D_f): the speaker
    dynamic = rng.standard_normal((36, 20, 4))  # (N, T, D_z): noise
    eers = verification_eers(static, dynamic, utterance, speaker)
    assert eers["static"]["eer"] == 0.0 and eers["static"]["trials"] == 66
    assert eers["dynamic"]["eer"] > 0.2


def test_make_table3_labels_published_rows(tmp_path: Path):
    ours = tmp_path / "ours.csv"
    pd.DataFrame(
        [
            {
                "dataset": "fsdd",
                "model": "s3vae",
                "feature": "z_f",
                "dim": 16,
                "eer": 0.1,
                "utterances": 9,
                "trials": 36,
                "note": "FSDD: held-out utterances",
            }
        ]
    ).to_csv(ours, index=False)
    published = tmp_path / "published.csv"
    published.write_text(
        "# comment\ndataset,model,feature,dim,eer,utterances,trials,note,source\n"
        "timit,FHVAE,z_2,16,0.05,,,,a paper\n"
    )
    make_table3(
        verification=[ours], published=published, output_csv=tmp_path / "t.csv", output_md=tmp_path / "t.md"
    )
    table = pd.read_csv(tmp_path / "t.csv")
    assert table["source"].tolist() == ["seqdis", "a paper"]
    assert table["model"].tolist() == ["s3vae", "published: FHVAE"]
    assert "10.00" in (tmp_path / "t.md").read_text()
    make_table3(  # the repository's published file parses (comment lines, maybe no rows)
        verification=[ours],
        published=REPO / "workflow/published/table3.csv",
        output_csv=tmp_path / "u.csv",
        output_md=tmp_path / "u.md",
    )


# --- models --------------------------------------------------------------------------------------
def _fhvae_batch():
    x = torch.randn(6, 20, 12)  # (B, T, D)
    targets = {
        "sequence_index": torch.tensor([0, 0, 1, 2, 3, -1]),
        "sequence_segments": torch.tensor([2, 2, 1, 1, 1, 4]),
    }
    return x, targets


@pytest.mark.parametrize("alpha", [0.0, 10.0])
def test_fhvae_shapes_loss_and_one_step(alpha: float):
    torch.manual_seed(0)
    config = models.FHVAEConfig(
        feature_dim=12, hidden_dim=16, static_dim=4, dynamic_dim=3, num_sequences=4, alpha=alpha
    )
    model = models.FHVAE(config)
    x, targets = _fhvae_batch()
    out = model(x)
    assert out.static.mean.shape == (6, 4) and out.dynamic.mean.shape == (6, 3) and out.recon.shape == x.shape
    static, dynamic = model.encode(x)
    assert model.decode(static.mean, dynamic.mean).shape == x.shape
    terms = model.loss(x, out, targets, dataset_size=8)
    assert ("discriminative" in terms) == (alpha > 0)
    assert all(torch.isfinite(v) for v in terms.values())

    def loss() -> torch.Tensor:
        torch.manual_seed(1)
        return model.loss(x, model(x), targets, dataset_size=8)["loss"]

    assert_adam_steps_lower(model, loss, lr=1e-2)


def test_fhvae_unseen_sequences_use_the_marginal_prior():
    model = models.FHVAE(
        models.FHVAEConfig(feature_dim=12, hidden_dim=8, static_dim=4, dynamic_dim=3, num_sequences=4)
    )
    prior = model._z2_prior(torch.tensor([1, -1]))
    np.testing.assert_allclose(prior.logvar.exp()[:, 0].tolist(), [0.25, 1.25])


TINY_VECTOR_FRAMES = {
    "frame_kind": "vector",
    "feature_dim": 12,
    "frame_dim": 16,
    "hidden_dim": 16,
    "static_dim": 4,
    "dynamic_dim": 3,
}


def test_s3vae_on_feature_vectors_with_silence_dfp():
    config = models.S3VAEConfig(
        **TINY_VECTOR_FRAMES,
        dfp_target="silence",
        dfp_classes=1,
        dfp_weight=1.0,
        scc_weight=1.0,
        mi_weight=1.0,
    )
    model = models.S3VAE(config)
    x = torch.randn(5, 20, 12)
    out = model(x)
    assert out.recon.shape == x.shape and out.dynamic.mean.shape == (5, 20, 3)
    terms = model.loss(x, out, {"silence": torch.randint(0, 2, (5, 20), dtype=torch.uint8)}, dataset_size=50)
    assert {"dfp", "scc", "mi"} <= set(terms) and torch.isfinite(terms["loss"])
    with pytest.raises(ValueError, match="feature_dim"):
        models.S3VAE(models.S3VAEConfig(frame_kind="vector"))


@pytest.mark.parametrize("encoder", ["factorised", "full"])
def test_dsvae_on_feature_vectors_one_step_lowers_the_loss(encoder: str):
    torch.manual_seed(0)
    model = models.DSVAE(models.DSVAEConfig(**TINY_VECTOR_FRAMES, encoder=encoder))
    x = torch.randn(5, 20, 12)
    out = model(x)
    assert (
        out.recon.shape == x.shape
        and out.static.mean.shape == (5, 4)
        and out.dynamic.mean.shape == (5, 20, 3)
    )
    static, dynamic = model.encode(x)
    assert model.decode(static.mean, dynamic.mean).shape == x.shape

    def loss() -> torch.Tensor:
        torch.manual_seed(1)
        return model.loss(x, model(x), {}, dataset_size=50)["loss"]

    assert_adam_steps_lower(model, loss, lr=1e-2)
    with pytest.raises(ValueError, match="gaussian"):
        models.DSVAEConfig(frame_kind="vector", feature_dim=12, likelihood="bernoulli")
