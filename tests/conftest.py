"""Shared fixtures: the local data mirror, a verified copy of the LPC sheets fetched from it once, and a
small copy of the MUG database in its own layout cut from the mirror's GRID faces; and the helpers that run
the workflow's CLI in a copy of its files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.config import load
from pipeline.data.download import fetch_source
from pipeline.stage import config_arguments

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs")  # what a copy of the workflow needs
# config.yaml as the workflow resolves it: where a stage called directly reads its unset config arguments
WORKFLOW_CONFIG = load()


@pytest.fixture(scope="session")
def mirror() -> Path:
    """Folder holding one sub-folder per data source (`SEQDIS_MIRROR`, else ../shared/data)."""
    path = Path(os.environ.get("SEQDIS_MIRROR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"no data mirror at {path}: set SEQDIS_MIRROR to a folder holding lpc-sprites/ etc.")
    return path


@pytest.fixture(scope="session")
def lpc_sprites(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LPC sheets, fetched from the mirror and verified, in a folder shared by the whole session."""
    if not (mirror / "lpc-sprites").is_dir():
        pytest.skip(f"the mirror {mirror} has no lpc-sprites/ folder")
    dest = tmp_path_factory.mktemp("lpc-sprites")
    fetch_source(source="lpc-sprites", dest=dest, mirror=mirror)
    return dest


@pytest.fixture(scope="session")
def grid_samples(mirror: Path) -> Path:
    """The mirror's GRID sample videos (real talking faces, 10 people)."""
    if not (mirror / "grid-samples").is_dir():
        pytest.skip(f"the mirror {mirror} has no grid-samples/ folder")
    return mirror / "grid-samples"


@pytest.fixture(scope="session")
def mug_root(grid_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the MUG database in its own layout, cut from the GRID faces (tests/mug_fixture.py)."""
    pytest.importorskip("mediapipe", reason="the face stages need the [faces] extra (README, Faces)")
    from mug_fixture import write_mug_copy

    return write_mug_copy(tmp_path_factory.mktemp("mug") / "subjects3", grid_samples)


def assert_adam_steps_lower(model: torch.nn.Module, loss_at_fixed_noise, *, lr: float, steps: int = 1):
    """`steps` Adam steps on `loss_at_fixed_noise()` (which reseeds, so every call draws the same noise on the
    same batch) lower it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        before = loss_at_fixed_noise()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_at_fixed_noise().backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_at_fixed_noise()
    assert after < before, f"loss went from {before.item():.3f} to {after.item():.3f}"


def call_with_config(stage, config: dict, **arguments):
    """Call `stage` as its rule does: what it reads from the workflow config (its `FromConfig` arguments)
    taken from `config`, the rest from `arguments`."""
    return stage(**{**config_arguments(stage, config), **arguments})


def snakemake(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the Snakemake CLI of this interpreter; stdout and stderr together in `.stdout`."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: {rule: jobs}."""
    assert "Job stats:" in output, output[-3000:]
    table = output.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M))
    return {rule: int(n) for rule, n in counts.items() if rule != "total"}


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (WORKFLOW_FILES) copied to `dest`, made if need be; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    return dest
