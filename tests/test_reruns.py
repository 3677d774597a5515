"""A rerun never reuses work made from other inputs or other code, through the Snakemake CLI, one test per
probe of issue 21: changed data and a forced rerun train again, a kill -9 still resumes, a damaged model
names itself and its rule, the schema stops what a job would refuse, paper scale on a CPU says its cost,
and the report's missing file names its likely cause.

Each runs in a copy of the workflow files (conftest.copy_workflow) at the smoke preset, on moving dSprites
(rendered in code: no download).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import copy_workflow, job_counts, snakemake

MODEL = "results/models/dsprites/dsvae_full/seed0/model.pt"
TRAINING_LOG = "logs/train_model/dsprites_dsvae_full_seed0.log"
SMOKE = ("--config", "preset=smoke")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["state_dict"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def checked(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


@pytest.mark.slow
def test_changed_data_and_a_forced_rerun_train_again_and_say_why(tmp_path: Path):
    work = copy_workflow(tmp_path)
    checked(snakemake("--cores", "1", MODEL, *SMOKE, cwd=work))
    first = weights(work / MODEL)

    fewer = (*SMOKE, "dsprites={train_sequences: 40}")  # Snakemake rebuilds the data and retrains
    checked(snakemake("--cores", "1", MODEL, *fewer, cwd=work))
    log = (work / TRAINING_LOG).read_text()
    assert "training dsvae on 40 clips" in log
    assert (
        "not resuming results/models/dsprites/dsvae_full/seed0/run/checkpoint.pt: inputs changed (dataset)"
        in log
    )
    assert "resuming results" not in log.replace("not resuming results", "")
    assert "epoch 2/2" in log
    retrained = weights(work / MODEL)
    assert not same_weights(first, retrained)

    checked(snakemake("--cores", "1", MODEL, "--forcerun", "train_model", *fewer, cwd=work))
    log = (work / TRAINING_LOG).read_text()
    assert "checkpoint.pt: finished run: training again; training from epoch 1" in log and "epoch 2/2" in log
    assert same_weights(weights(work / MODEL), retrained)  # same inputs, same seed: the same model


def wait_for_epoch(checkpoint: Path, epoch: int, job: subprocess.Popen, timeout: float = 120) -> int:
    """Poll the run's checkpoint until it holds at least `epoch` epochs; return how many it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.poll() is None, "the run ended before it could be killed"
        if checkpoint.exists():
            done = torch.load(checkpoint, weights_only=False)["epoch"]
            if done >= epoch:
                return done
        time.sleep(0.05)
    raise TimeoutError(f"{checkpoint} did not reach epoch {epoch}")


@pytest.mark.slow
def test_a_training_killed_with_sigkill_resumes_to_the_uninterrupted_model(tmp_path: Path):
    config = (*SMOKE, "train={epochs: 24}")
    whole = copy_workflow(tmp_path / "whole")
    checked(snakemake("--cores", "1", MODEL, *config, cwd=whole))

    work = copy_workflow(tmp_path / "killed")
    job = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", MODEL, *config],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        done = wait_for_epoch(work / Path(MODEL).parent / "run" / "checkpoint.pt", 3, job)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # Snakemake and its job, as a killed terminal or node
        job.wait()
    assert done < 24 and not (work / MODEL).exists()
    checked(snakemake("--unlock", MODEL, *config, cwd=work))
    checked(snakemake("--cores", "1", MODEL, *config, cwd=work))
    log = (work / TRAINING_LOG).read_text()
    assert "resuming results/models/dsprites/dsvae_full/seed0/run/checkpoint.pt after epoch" in log
    assert same_weights(weights(work / MODEL), weights(whole / MODEL))


@pytest.mark.slow
def test_a_truncated_model_fails_its_scoring_job_naming_the_file_and_the_rule(tmp_path: Path):
    work = copy_workflow(tmp_path)
    metrics = "results/metrics/dsprites/dsvae_full/seed0.csv"
    checked(snakemake("--cores", "1", MODEL, *SMOKE, cwd=work))
    model = work / MODEL
    os.truncate(model, model.stat().st_size // 2)
    result = snakemake("--cores", "1", metrics, *SMOKE, cwd=work)
    assert result.returncode != 0
    error = f"ERROR: evaluate_model failed: DamagedFileError: {MODEL} is truncated (torch.load: RuntimeError"
    assert result.stdout.count(error) == 1, result.stdout[-4000:]
    assert "--forcerun train_model" in result.stdout and "Traceback" not in result.stdout
    fixed = snakemake("-n", metrics, "--forcerun", "train_model", *SMOKE, cwd=work)
    assert job_counts(fixed.stdout) == {"train_model": 1, "evaluate_model": 1}


@pytest.mark.slow
def test_a_negative_seed_stops_the_dry_run_naming_the_key(tmp_path: Path):
    result = snakemake("-n", MODEL, *SMOKE, "seed=-1", cwd=copy_workflow(tmp_path))
    assert result.returncode != 0
    assert "seed: -1 is less than the minimum of 0" in result.stdout and "Job stats" not in result.stdout


@pytest.mark.slow
def test_paper_scale_on_a_cpu_says_its_cost_before_any_job(tmp_path: Path):
    work = copy_workflow(tmp_path)
    paper = snakemake("-n", "--cores", "8", "results/tables/table1.csv", "--config", "device=cpu", cwd=work)
    out = checked(paper)
    assert job_counts(out)["train_model"] == 60
    warning = next(line for line in out.splitlines() if line.startswith("WARNING: this plan trains"))
    # SMMNIST's judge has epochs of its own (config judge.datasets)
    planned = "1 train_judge of 8 epochs, 1 train_judge of 20 epochs, 60 train_model of 300 epochs"
    assert f"at the paper preset's scale on the CPU (device: cpu): {planned}" in warning
    assert "--config preset=quick" in warning
    assert out.index("WARNING: this plan trains") < out.index("rule train_model")  # before the jobs
    quick = snakemake("-n", "--cores", "8", "results/tables/table1.csv", "--config", "preset=quick", cwd=work)
    assert "WARNING: this plan trains" not in checked(quick)


@pytest.mark.slow
def test_a_report_without_the_runs_config_names_the_likely_cause(tmp_path: Path):
    (tmp_path / "data").mkdir()  # a mirror folder; moving dSprites needs nothing from it
    work = copy_workflow(tmp_path / "workflow")
    checked(snakemake("--cores", "1", "results/data/dsprites.h5", *SMOKE, "mirror=../data", cwd=work))
    result = snakemake("--report", "report.html", cwd=work)  # the run's --config left out
    assert result.returncode != 0
    out = result.stdout
    assert "marked for report but does not exist." in out
    assert "seqdis: a report is built for the config it is given (no --config)" in out
    assert out.rstrip().endswith(
        "The last run here (results/run_config.yaml) had --config preset=smoke mirror=../data: "
        "snakemake --report results/report.html --config preset=smoke mirror=../data"
    )
