"""Bad input files: each failure names the file, what is wrong and the fix, and leaves nothing half-written.

Every case runs on tiny files the test makes: a dSprites file of six short clips, a folder of fake sheets
with its own SHA256SUMS, an FSDD folder with one WAV that is not one, model files and table CSVs cut short
or holding something else.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile
import torch
from conftest import WORKFLOW_CONFIG, call_with_config

import models
from pipeline import files
from pipeline.data import h5io
from pipeline.data.audio import build_audio
from pipeline.data.clips import load_clips
from pipeline.data.download import DownloadError
from pipeline.data.dsprites import build_dsprites
from pipeline.data.sprites import ATTRIBUTES, SHOES, build_sprites, load_layer
from pipeline.evaluate.table1 import evaluate_model
from pipeline.labels.flow import label_flow
from pipeline.report.tables import make_table
from pipeline.train.checkpoint import load_model, save_model

SHEETS = [file for variants in ATTRIBUTES.values() for v in variants for file in v.files] + list(SHOES.files)


def tiny_dsprites(path: Path) -> Path:
    call_with_config(
        build_dsprites,
        WORKFLOW_CONFIG,
        output=path,
        train_sequences=4,
        test_sequences=2,
        frames=3,
        image_size=32,
    )
    return path


def assert_nothing_written(output: Path) -> None:
    """Neither the output nor a temporary sibling of it (pipeline.files.atomic_path) is left."""
    assert not output.exists(), f"{output} was written"
    if output.parent.exists():
        leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.tmp-")]
        assert not leftovers, f"temporary files left: {leftovers}"


def flip(path: Path, offset: int, size: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        block = f.read(size)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in block))


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("results/data/dsprites.h5", "build_dsprites"),
        ("results/data/sprites.h5", "build_sprites"),
        ("results/data/fsdd.h5", "build_audio"),
        ("/work/x/results/data/bouncing.h5", "build_bouncing"),
        ("results/labels/sprites/flow.h5", "label_flow"),
        ("results/labels/fsdd/silence.h5", "label_silence"),
        ("results/labels/grid/landmarks.h5", "label_landmarks"),
        ("results/models/sprites/full_swap/seed1/model.pt", "train_model"),
        ("results/models/sprites/full/seed0/run/metrics.csv", "train_model"),
        ("results/models/fsdd/s3vae/z16/model.pt", "train_audio_model"),
        ("results/judges/smmnist/judge.pt", "train_judge"),
        ("results/judges/smmnist/accuracy.csv", "train_judge"),
        ("results/metrics/sprites/full/seed0.csv", "evaluate_model"),
        ("results/metrics/sprites/full/seed0_diagnostics.csv", "diagnose_model"),
        ("results/metrics/fsdd/s3vae/z16_verification.csv", "evaluate_verification"),
        ("elsewhere/dataset.h5", None),
    ],
)
def test_the_rule_that_rebuilds_a_file_comes_from_its_path(path: str, rule: str | None):
    assert files.producing_rule(path) == rule
    hint = files.rebuild_hint(path)
    assert path in hint
    if rule is not None:
        assert f"--forcerun {rule}" in hint


def test_a_truncated_dataset_names_the_file_and_how_to_rebuild_it(tmp_path: Path):
    data = tiny_dsprites(tmp_path / "results" / "data" / "dsprites.h5")
    os.truncate(data, data.stat().st_size // 2)
    for read in (
        lambda: h5io.read_split(data, "train"),
        lambda: h5io.read_attrs(data),
        lambda: load_clips(data, "test"),
    ):
        with pytest.raises(files.DamagedFileError) as err:
            read()
        message = str(err.value)
        assert str(data) in message and "is truncated" in message
        assert "--forcerun build_dsprites" in message and f"delete {data}" in message
    labels = tmp_path / "results" / "labels" / "dsprites" / "flow.h5"
    with pytest.raises(files.DamagedFileError, match="--forcerun build_dsprites"):
        call_with_config(label_flow, WORKFLOW_CONFIG, dataset=data, output=labels, grid=4, topk=2)
    assert_nothing_written(labels)


def test_a_truncated_label_file_names_the_label_rule(tmp_path: Path):
    labels = tmp_path / "results" / "labels" / "dsprites" / "flow.h5"
    call_with_config(
        label_flow,
        WORKFLOW_CONFIG,
        dataset=tiny_dsprites(tmp_path / "results/data/dsprites.h5"),
        output=labels,
        grid=4,
        topk=2,
    )
    os.truncate(labels, labels.stat().st_size - 100)
    with pytest.raises(files.DamagedFileError) as err:
        h5io.read_labels(labels, "train")
    assert str(labels) in str(err.value) and "--forcerun label_flow" in str(err.value)


def test_flipped_bytes_in_a_dataset_name_the_file_and_how_to_rebuild_it(tmp_path: Path):
    data = tiny_dsprites(tmp_path / "results" / "data" / "dsprites.h5")
    intact = h5io.read_split(data, "train").frames
    assert np.unique(intact).size > 2  # real pixels, so the compressed chunks are not empty
    # The chunks fill only part of a file this small, and where the metadata lies moves with every
    # attribute written: flip the bytes of the first clip's chunk itself.
    with h5py.File(data, "r") as f:
        chunk = f["train/frames"].id.get_chunk_info(0)
    flip(data, chunk.byte_offset, chunk.size)
    labels = tmp_path / "results" / "labels" / "dsprites" / "flow.h5"
    with pytest.raises(files.DamagedFileError) as err:
        call_with_config(label_flow, WORKFLOW_CONFIG, dataset=data, output=labels, grid=4, topk=2)
    message = str(err.value)
    assert str(data) in message and "is damaged" in message
    assert "--forcerun build_dsprites" in message
    assert_nothing_written(labels)


def saved_model(path: Path, family_name: str = "s3vae") -> Path:
    config = models.S3VAEConfig(image_size=16, conv_channels=(4, 8), frame_dim=8, hidden_dim=8)
    save_model(path, family_name, models.S3VAE(config))
    return path


def test_a_truncated_model_or_judge_names_itself_and_the_rule_that_retrains_it(tmp_path: Path):
    for path, rule in (
        (tmp_path / "results/models/dsprites/full/seed0/model.pt", "train_model"),
        (tmp_path / "results/judges/dsprites/judge.pt", "train_judge"),
    ):
        saved_model(path)
        os.truncate(path, path.stat().st_size // 2)
        with pytest.raises(files.DamagedFileError) as err:
            load_model(path)
        message = str(err.value)
        assert message.startswith(f"{path} is truncated (torch.load: RuntimeError: ")
        assert f"--forcerun {rule}" in message and f"delete {path}" in message


@pytest.mark.parametrize(
    ("contents", "what"),
    [
        (b"", "is truncated (torch.load: EOFError"),
        (b"id,value\n1,2\n", "is damaged (torch.load: UnpicklingError"),
        (
            "a dict without a model",
            "is not a seqdis model file (it lacks ['family', 'config', 'state_dict'])",
        ),
        ("a model of another shape", "does not hold the model its config describes (RuntimeError"),
    ],
)
def test_a_file_that_is_no_model_names_itself_and_what_is_wrong(tmp_path: Path, contents, what: str):
    path = tmp_path / "results/models/dsprites/full/seed0/model.pt"
    path.parent.mkdir(parents=True)
    if contents == "a dict without a model":
        torch.save({"weights": torch.zeros(2)}, path)
    elif contents == "a model of another shape":
        saved = torch.load(saved_model(path), weights_only=False)
        saved["config"]["hidden_dim"] = 16
        torch.save(saved, path)
    else:
        path.write_bytes(contents)
    with pytest.raises(files.DamagedFileError) as err:
        load_model(path)
    assert str(err.value).startswith(f"{path} {what}") and "--forcerun train_model" in str(err.value)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "is damaged (EmptyDataError"),
        ("dataset,head,accuracy,n\n", "holds no rows"),
        ("dataset,head\nsprites,action\n", "lacks the columns ['accuracy', 'n']"),
        (
            "dataset,head,accuracy,n\nsprites,action,0.99,2664\nsprites,sk",
            "has empty cells in ['accuracy', 'n']",
        ),
    ],
)
def test_a_damaged_table_csv_names_itself_and_the_rule_that_remakes_it(tmp_path: Path, text: str, what: str):
    path = tmp_path / "results/judges/sprites/accuracy.csv"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(files.DamagedFileError) as err:
        files.read_csv(path, columns=["dataset", "head", "accuracy", "n"])
    assert str(err.value).startswith(f"{path} {what}") and "--forcerun train_judge" in str(err.value)


def test_a_missing_split_is_not_called_damage(tmp_path: Path):
    data = tiny_dsprites(tmp_path / "dsprites.h5")
    with pytest.raises(KeyError, match="has no split 'val'") as err:
        h5io.read_split(data, "val")
    assert not isinstance(err.value, files.DamagedFileError)


def test_a_dataset_built_before_it_carried_its_protocol_names_the_file_and_how_to_rebuild_it(tmp_path: Path):
    """Both stages read the protocol before anything else: the missing model and CSV files do not matter."""
    data = tiny_dsprites(tmp_path / "results" / "data" / "dsprites.h5")
    with h5py.File(data, "a") as f:
        del f.attrs["protocol"]  # as build_dsprites wrote it before the protocol moved into the file
    for read in (
        lambda: h5io.read_protocol(data),
        lambda: call_with_config(
            evaluate_model,
            WORKFLOW_CONFIG,
            model="missing.pt",
            judge="missing.pt",
            dataset=str(data),
            output="m.csv",
            method="m",
        ),
        lambda: make_table(
            datasets=[str(data)], metrics=[], judges=[], published="p", output_csv="t.csv", output_md="t.md"
        ),
    ):
        with pytest.raises(h5io.LayoutError) as err:
            read()
        message = str(err.value)
        assert str(data) in message and "carries no scoring protocol" in message
        assert "--forcerun build_dsprites" in message
        assert not isinstance(err.value, files.DamagedFileError)


def test_a_protocol_must_name_known_directions_and_one_of_the_heads(tmp_path: Path):
    with pytest.raises(ValueError, match="must be one or more of"):
        h5io.Protocol(("fixed_motion",), "motion", "Moving dSprites")
    with pytest.raises(ValueError, match="must be one or more of"):
        h5io.Protocol((), "motion", "Moving dSprites")
    output = tmp_path / "tiny.h5"
    split = {
        "frames": np.zeros((1, 2, 4, 4, 1), np.uint8),
        "sequence_id": [0],
        "digit_a": [0],
        "digit_b": [1],
    }
    factors = [h5io.Factor(f"digit_{k}", "static", ("0", "1"), group="digits") for k in "ab"]
    with pytest.raises(ValueError, match="score head 'digit_a' is none of the heads"):
        h5io.write_dataset(
            output,
            name="tiny",
            factors=factors,
            splits={"train": split},
            protocol=h5io.Protocol(("fixed_static",), "digit_a", "tiny"),  # its head is the group, digits
        )
    assert_nothing_written(output)


def fake_sheets(folder: Path) -> Path:
    """Tiny stand-ins for the LPC sheets with a SHA256SUMS that lists them, as download_source leaves it."""
    lines = []
    for i, file in enumerate(SHEETS):
        path = folder / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"sheet {i}".encode())
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {file}\n")
    (folder / "SHA256SUMS").write_text("".join(lines))
    return folder


def test_a_sheet_changed_after_its_download_is_caught_before_it_is_read(tmp_path: Path):
    sheets = fake_sheets(tmp_path / "resources" / "lpc-sprites")
    changed = sheets / SHEETS[3]
    flip(changed, 0, size=4)
    output = tmp_path / "results" / "data" / "sprites.h5"
    with pytest.raises(DownloadError) as err:
        build_sprites(sheets_dir=sheets, output=output, train_characters=1, test_characters=1)
    message = str(err.value)
    assert str(changed) in message and "sha256" in message and str(sheets / "SHA256SUMS") in message
    assert "--forcerun download_source" in message and f"delete {sheets}" in message
    assert "--source lpc-sprites" in message
    assert_nothing_written(output)


def test_sheets_without_their_sha256sums_are_refused(tmp_path: Path):
    sheets = fake_sheets(tmp_path / "lpc-sprites")
    (sheets / "SHA256SUMS").unlink()
    with pytest.raises(DownloadError, match="SHA256SUMS does not exist") as err:
        build_sprites(sheets_dir=sheets, output=tmp_path / "out.h5", train_characters=1, test_characters=1)
    assert "--forcerun download_source" in str(err.value)
    assert_nothing_written(tmp_path / "out.h5")


def test_an_unreadable_sheet_names_the_file_and_the_fix(tmp_path: Path):
    sheets = fake_sheets(tmp_path / "lpc-sprites")  # the fake sheets are no PNGs at all
    with pytest.raises(ValueError, match="cannot be read") as err:
        load_layer(sheets_dir=sheets, files=(SHEETS[0],))
    assert str(sheets / SHEETS[0]) in str(err.value) and "--forcerun download_source" in str(err.value)


def test_a_corrupt_fsdd_wav_names_the_file_and_the_fix(tmp_path: Path):
    root = tmp_path / "resources" / "fsdd"
    (root / "recordings").mkdir(parents=True)
    rate = 8000
    for index in range(2):
        samples = np.zeros(rate // 2, dtype=np.float32)
        soundfile.write(root / "recordings" / f"0_george_{index}.wav", samples, rate)
    corrupt = root / "recordings" / "1_george_0.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(64))
    output = tmp_path / "results" / "data" / "fsdd.h5"
    with pytest.raises(ValueError, match="not a readable WAV file") as err:
        build_audio(dataset="fsdd", root=root, output=output, features={})
    message = str(err.value)
    assert str(corrupt) in message and "--forcerun download_source" in message
    assert f"delete {root}" in message and "--source fsdd" in message
    assert_nothing_written(output)
