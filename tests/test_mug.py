"""MUG from a copy in the database's own layout (tests/mug_fixture.py: real GRID faces): clips, factors, the
stratified 75/25 split, what is left out, determinism, and the errors that say what to fix."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import WORKFLOW_CONFIG, call_with_config
from mug_fixture import SHORT_TAKE, expected_takes

from pipeline.data import h5io
from pipeline.data.mug import EXPRESSIONS, MUG_SITE, PROTOCOL, build_mug, find_takes, split_clips

SUBJECTS = ("001", "002", "003", "004", "005")


def build(root: Path | None, output: Path, **overrides) -> Path:
    call_with_config(build_mug, WORKFLOW_CONFIG, output=output, root=root, **overrides)
    return output


@pytest.fixture(scope="module")
def mug(mug_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(mug_root, tmp_path_factory.mktemp("mug-data") / "mug.h5")


def test_clips_factors_and_protocol(mug: Path):
    train, test = h5io.read_split(mug, "train"), h5io.read_split(mug, "test")
    assert train.frames.shape[1:] == test.frames.shape[1:] == (15, 64, 64, 3)  # S3VAE 5.1: 15 x 64 x 64
    assert train.frames.dtype == np.uint8 and train.frames.std() > 10  # faces, not a blank crop
    factors = {f.name: f for f in h5io.read_factors(mug)}
    assert factors["expression"].kind == "dynamic" and factors["expression"].classes == EXPRESSIONS
    assert factors["identity"].kind == "static" and factors["identity"].classes == SUBJECTS
    assert h5io.read_protocol(mug) == PROTOCOL  # fixed_dynamics, scored on the expression
    assert PROTOCOL.directions == ("fixed_dynamics",) and PROTOCOL.score_head == "expression"
    videos = json.loads(h5io.read_attrs(mug)["videos"])
    ids = np.concatenate([train.sequence_id, test.sequence_id])
    assert sorted(ids) == list(range(len(videos)))  # one clip per video
    for split in (train, test):
        for i, expression in zip(split.sequence_id, split.factors["expression"], strict=True):
            assert videos[i].split("/")[1] == EXPRESSIONS[expression]


def test_neutral_and_short_takes_are_left_out(mug: Path, mug_root: Path):
    videos = json.loads(h5io.read_attrs(mug)["videos"])
    assert len(videos) == expected_takes() == 40  # the six expressions' takes of 20-30 frames
    assert (mug_root / "001" / "neutral").is_dir() and not [v for v in videos if "/neutral/" in v]
    assert SHORT_TAKE.as_posix() not in videos and (mug_root / SHORT_TAKE).is_dir()


def test_the_split_is_75_25_and_holds_every_subject_and_expression(mug: Path):
    train, test = h5io.read_split(mug, "train"), h5io.read_split(mug, "test")
    assert (len(train), len(test)) == (30, 10)
    for split in (train, test):
        assert set(split.factors["identity"]) == set(range(len(SUBJECTS)))
        assert set(split.factors["expression"]) == set(range(len(EXPRESSIONS)))


def test_clips_are_random_windows_that_differ(mug: Path):
    train = h5io.read_split(mug, "train")
    flat = train.frames.reshape(len(train), -1).astype(np.int16)
    assert len({row.tobytes() for row in train.frames[:, 0]}) == len(train)  # no two first frames alike
    assert np.abs(flat[0] - flat[1]).mean() > 1


def test_the_build_is_deterministic_by_seed(mug: Path, mug_root: Path, tmp_path: Path):
    again = build(mug_root, tmp_path / "again.h5")
    other = build(mug_root, tmp_path / "other.h5", seed=1)
    for split in ("train", "test"):
        a, b = h5io.read_split(mug, split), h5io.read_split(again, split)
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.sequence_id, b.sequence_id)
    assert not np.array_equal(
        h5io.read_split(mug, "test").sequence_id, h5io.read_split(other, "test").sequence_id
    )


def test_a_short_take_is_skipped_with_a_log_line(mug_root: Path, tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.data.mug"):
        build(mug_root, tmp_path / "mug.h5")
    assert f"mug: skipped {SHORT_TAKE.as_posix()}: 10 frames, shorter than a clip" in caplog.text
    assert "left out the folders ['neutral']" in caplog.text


def test_split_at_the_databases_size_is_stratified():
    """52 subjects x 6 expressions x 11 takes (about MUG's 3528 videos): 25% of every cell in test."""
    subjects, expressions = np.divmod(np.arange(52 * 6 * 11) // 11, 6)
    test = split_clips(subjects, expressions, 0.75, seed=0)
    assert test.sum() == round(0.25 * len(test))
    for cell in range(52 * 6):
        share = test[subjects * 6 + expressions == cell].mean()
        assert 2 / 11 <= share <= 3 / 11 + 1e-9, (cell, share)


def test_split_keeps_a_subject_with_one_clip_in_train():
    subjects = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    expressions = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0])
    for seed in range(5):
        test = split_clips(subjects, expressions, 0.5, seed)
        assert not test[8] and set(subjects[test]) == {0, 1} and set(expressions[test]) == {0, 1}


def test_no_root_says_it_is_licensed_where_to_get_it_and_what_to_set(tmp_path: Path):
    with pytest.raises(ValueError) as err:
        build(None, tmp_path / "mug.h5")
    message = str(err.value)
    assert "mug.root is null" in message and "licensed" in message and MUG_SITE in message
    assert "--config mug='{root: " in message and "subject folders" in message
    assert not (tmp_path / "mug.h5").exists()


def test_a_subject_without_expression_folders_is_named_with_the_layout(mug_root: Path, tmp_path: Path):
    root = tmp_path / "subjects3"
    shutil.copytree(mug_root / "001", root / "001")
    (root / "002" / "session1").mkdir(parents=True)  # a subject folder of another layout
    with pytest.raises(FileNotFoundError) as err:
        find_takes(root)
    message = str(err.value)
    assert f"{root / '002'} (the first subject folder without one) holds no expression folder" in message
    assert "found: ['session1']" in message
    assert "<subject, e.g. 001>/<expression, e.g. happiness>/<take, e.g. take000>/img_0000.jpg" in message
    assert "point mug.root at that folder" in message


def test_an_empty_take_and_an_empty_root_are_named(mug_root: Path, tmp_path: Path):
    root = tmp_path / "subjects3"
    shutil.copytree(mug_root / "001", root / "001")
    (root / "001" / "anger" / "take005").mkdir()
    with pytest.raises(FileNotFoundError, match=r"anger/take005 \(a take\) holds no .jpg frame"):
        build(root, tmp_path / "mug.h5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"mug.root {empty} holds no subject folder"):
        find_takes(empty)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        find_takes(tmp_path / "absent")
    assert not (tmp_path / "mug.h5").exists()
