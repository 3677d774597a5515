"""Data-parallel training on the CPU: two gloo ranks under torchrun against one process, and a two-rank
training stage killed and resumed (pipeline/train/distributed.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, call_with_config
from test_training import assert_same_weights, epoch_of, tiny_config, write_tiny_data

from pipeline.stage import config_arguments
from pipeline.train.model import train_model

WORKER = Path(__file__).with_name("ddp_worker.py")
EPOCHS = 40  # tiny epochs of about 50 ms: enough of them to kill the run between two
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun(processes: int, *arguments: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        *arguments,
    ]


@pytest.mark.slow
def test_two_ranks_take_the_steps_of_one_process_at_the_same_global_batch(tmp_path: Path):
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one")], env=ENV, check=True)
    subprocess.run(torchrun(2, str(WORKER), str(tmp_path / "two")), env=ENV, check=True)
    one, two = (pd.read_csv(tmp_path / run / "metrics.csv") for run in ("one", "two"))
    assert len(one) == len(two) == 6  # 3 epochs x (train, test), logged once, by rank 0
    assert one["loss"].iloc[-1] < 0.5 * one["loss"].iloc[0]  # it trains
    assert (one["loss"] - two["loss"]).abs().max() <= 1e-5 * one["loss"].abs().max()
    weights_one, weights_two = (torch.load(tmp_path / run / "weights.pt") for run in ("one", "two"))
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, rtol=1e-5, atol=1e-6)


def _stage_command(tmp_path: Path, kwargs: dict, log: Path) -> list[str]:
    """`relaunch` of train_model with two ranks, in its own process (so the test can kill it)."""
    spec = tmp_path / "relaunch.json"
    spec.write_text(json.dumps(kwargs))
    code = (
        "import json, sys; from pipeline.train.distributed import relaunch; "
        f"relaunch('train_model', json.load(open({str(spec)!r})), 2, {str(log)!r})"
    )
    return [sys.executable, "-c", code]


def _train_kwargs(data: tuple[Path, Path], out: Path, config: dict) -> dict:
    dataset, labels = data
    return {
        **config_arguments(train_model, config),
        "dataset": str(dataset),
        "labels": str(labels),
        "output": str(out / "model.pt"),
        "variant": config["variants"]["full"],
    }


@pytest.mark.slow
def test_a_two_rank_training_killed_after_an_epoch_resumes_to_the_uninterrupted_model(tmp_path: Path):
    data = write_tiny_data(tmp_path)
    config = tiny_config(epochs=EPOCHS)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    command = _stage_command(tmp_path, _train_kwargs(data, whole, config), tmp_path / "whole.log")
    subprocess.run(command, env=ENV, check=True)
    assert (tmp_path / "whole.log.rank1").exists()  # rank 1 logs beside the job's log
    assert epoch_of(whole / "run" / "checkpoint.pt") == EPOCHS
    assert len(pd.read_csv(whole / "run" / "metrics.csv")) == 2 * EPOCHS  # rank 0 alone writes the metrics

    command = _stage_command(tmp_path, _train_kwargs(data, killed, config), tmp_path / "killed.log")
    job = subprocess.Popen(command, env=ENV, start_new_session=True)
    checkpoint = killed / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not (checkpoint.exists() and epoch_of(checkpoint) >= 1) and time.monotonic() < deadline:
        assert job.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the launcher and both ranks, as a cancelled cluster job
    job.wait()
    _wait_for_the_ranks_to_die()  # a rank dies with its agent, a moment later: read the checkpoint after
    done = epoch_of(checkpoint)
    assert 1 <= done < EPOCHS and not (killed / "model.pt").exists()
    subprocess.run(command, env=ENV, check=True)
    assert f"resuming {checkpoint} after epoch {done}" in (tmp_path / "killed.log").read_text()
    assert_same_weights(whole / "model.pt", killed / "model.pt")


def _wait_for_the_ranks_to_die(timeout: float = 30) -> None:
    """Until no process of a relaunched stage (torchrun's agent, the ranks) is left: torchrun starts each
    rank in a session of its own, so killing the job's process group reaches them only through their
    agent's death (pipeline/train/distributed.py: _die_with_the_launcher)."""

    def alive() -> list[Path]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if b"pipeline.train.distributed" in (proc / "cmdline").read_bytes():
                    found.append(proc)
            except OSError:  # it ended while we looked
                continue
        return found

    deadline = time.monotonic() + timeout
    while alive():
        assert time.monotonic() < deadline, f"ranks outlived their killed launcher: {alive()}"
        time.sleep(0.05)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    data = write_tiny_data(tmp_path)
    config = tiny_config()
    config["device"] = "cpu"
    monkeypatch.setattr("pipeline.train.distributed.rank_device", lambda device: device)  # no process group
    with pytest.raises(ValueError, match="multiple of 3"):
        call_with_config(train_model, config, **_train_kwargs(data, tmp_path, config))
