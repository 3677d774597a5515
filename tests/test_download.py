"""Fetching and verifying raw data sources (`pipeline.data.download`)."""

from __future__ import annotations

import io
import shutil
import urllib.error
from pathlib import Path

import pytest
from conftest import WORKFLOW_CONFIG, call_with_config

from pipeline.data import download
from pipeline.data.download import SOURCES, DownloadError, fetch_source, sha256_file

SPRITES = SOURCES["lpc-sprites"]
VICTIM = "hair/male/bangs/white.png"  # the file the failure tests damage


def _pinned(path: str) -> str:
    return next(f.sha256 for f in SPRITES.files if f.path == path)


def _copy_mirror(mirror: Path, tmp_path: Path) -> Path:
    """A private copy of the lpc-sprites mirror that a test may damage."""
    copy = tmp_path / "mirror"
    shutil.copytree(mirror / "lpc-sprites", copy / "lpc-sprites")
    return copy


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_source_pins_every_sheet_and_licence():
    paths = [f.path for f in SPRITES.files]
    assert len(paths) == len(set(paths)) == 30
    assert sum(p.endswith(".png") for p in paths) == 26
    assert {"README.md", "AUTHORS.txt", "cc-by-sa-3.0.txt", "gpl-3.0.txt"} <= set(paths)
    assert SPRITES.url_base.endswith("/2668274d5a96c91584172f2d299b90f0a8c0caac/")


def test_mirror_copy_is_verified_and_listed(lpc_sprites: Path):
    sums = lpc_sprites / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    assert len(lines) == len(SPRITES.files)
    for line in lines:
        digest, path = line.split("  ", 1)
        assert digest == _pinned(path)
        assert sha256_file(lpc_sprites / path) == digest


def test_unknown_source_lists_the_known_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="lpc-sprites"):
        call_with_config(fetch_source, WORKFLOW_CONFIG, source="no-such-data", dest=tmp_path)


def test_corrupted_file_is_rejected_and_not_kept(mirror: Path, tmp_path: Path):
    bad_mirror = _copy_mirror(mirror, tmp_path)
    victim = bad_mirror / "lpc-sprites" / VICTIM
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(data)
    dest = tmp_path / "dest"

    with pytest.raises(DownloadError) as err:
        fetch_source(source="lpc-sprites", dest=dest, mirror=bad_mirror)

    message = str(err.value)
    assert VICTIM in message and _pinned(VICTIM) in message and sha256_file(victim) in message
    assert "mirror" in message
    victim_folder = dest / Path(VICTIM).parent
    assert _leftovers(victim_folder) == []  # neither the bad file nor its temporary copy
    assert not (dest / "SHA256SUMS").exists()


def test_missing_file_names_the_path_looked_at(mirror: Path, tmp_path: Path):
    bad_mirror = _copy_mirror(mirror, tmp_path)
    (bad_mirror / "lpc-sprites" / VICTIM).unlink()

    with pytest.raises(DownloadError, match="mirror") as err:
        fetch_source(source="lpc-sprites", dest=tmp_path / "dest", mirror=bad_mirror)

    assert str(bad_mirror / "lpc-sprites" / VICTIM) in str(err.value)
    assert not (tmp_path / "dest" / "SHA256SUMS").exists()


def test_rerun_keeps_verified_files_and_replaces_bad_ones(mirror: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    fetch_source(source="lpc-sprites", dest=dest, mirror=mirror)
    inodes = {f.path: (dest / f.path).stat().st_ino for f in SPRITES.files}

    # An empty mirror proves nothing is fetched again: any fetch would fail.
    empty = tmp_path / "empty"
    empty.mkdir()
    fetch_source(source="lpc-sprites", dest=dest, mirror=empty)
    assert {f.path: (dest / f.path).stat().st_ino for f in SPRITES.files} == inodes

    (dest / VICTIM).write_bytes(b"not a sheet")
    fetch_source(source="lpc-sprites", dest=dest, mirror=mirror)
    assert sha256_file(dest / VICTIM) == _pinned(VICTIM)


def test_download_without_mirror_uses_the_pinned_url(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    requested = []

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO((mirror / "lpc-sprites" / url.removeprefix(SPRITES.url_base)).read_bytes())

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    fetch_source(source="lpc-sprites", dest=tmp_path, mirror=None)
    assert requested == [SPRITES.url_base + f.path for f in SPRITES.files]


def test_network_failure_names_the_url_and_the_mirror_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def offline(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="mirror") as err:
        fetch_source(source="lpc-sprites", dest=tmp_path, mirror=None)
    assert SPRITES.url_base + SPRITES.files[0].path in str(err.value)
    assert _leftovers(tmp_path) == []
