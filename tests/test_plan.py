"""What the workflow says before a job starts (pipeline/plan.py): the cost of paper scale on a CPU, and the
report's missing-file hint. The Snakemake side of both is in test_workflow.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pipeline import plan
from pipeline.config import load

PAPER = load(overrides={"device": "cpu"})


def training_job(rule: str, output: str, config: dict, method: str = "full") -> SimpleNamespace:
    """A planned job as Snakemake's DAG holds it: its rule's name, params and output."""
    params = (
        {"judge": config["judge"]}
        if rule == "train_judge"
        else {
            "variant": config["variants"][method],
            "architecture": config["model"],
            "train": config["train"],
        }
    )
    return SimpleNamespace(rule=SimpleNamespace(name=rule), params=params, output={"output": output})


def paper_plan(root: Path) -> list[SimpleNamespace]:
    models = [
        training_job("train_model", f"{root}/results/models/sprites/{m}/seed{k}/model.pt", PAPER, m)
        for m in ("full", "baseline")
        for k in range(3)
    ]
    return [training_job("train_judge", f"{root}/results/judges/sprites/judge.pt", PAPER), *models]


def measured_run(run: Path, config: dict, epoch_seconds: list[float], device: str = "cpu") -> None:
    """A run folder as training leaves it: config.json (the model and train settings) and metrics.csv."""
    run.mkdir(parents=True)
    model = {k: config["model"][k] for k in plan.WIDTH_KEYS}
    train = {"batch_size": config["train"]["batch_size"], "device": device}
    (run / "config.json").write_text(json.dumps({"model": model, "train": train}))
    rows = [f"{e},{split},{s / 2}" for e, s in enumerate(epoch_seconds, 1) for split in ("train", "test")]
    (run / "metrics.csv").write_text("epoch,split,seconds\n" + "\n".join(rows) + "\n")


def test_paper_scale_on_the_cpu_says_what_it_trains_and_the_fix(tmp_path: Path):
    warning = plan.cost_warning(paper_plan(tmp_path), {**PAPER, "preset": "paper"})
    assert warning.startswith(
        "WARNING: this plan trains at the paper preset's scale on the CPU (device: cpu)"
    )
    assert "1 train_judge of 20 epochs, 6 train_model of 300 epochs" in warning
    assert "No epoch at these sizes has been measured here yet" in warning
    assert "--config preset=quick" in warning and "profile" in warning


def test_the_estimate_comes_from_epochs_measured_at_the_same_sizes(tmp_path: Path):
    models = tmp_path / "results" / "models" / "sprites"
    measured_run(models / "full" / "seed0" / "run", PAPER, [700.0, 720.0, 710.0])  # median 710 s
    narrow = load(overrides={"preset": "quick"})
    measured_run(models / "baseline" / "seed0" / "run", narrow, [60.0])  # other widths: not this plan's
    measured_run(models / "baseline" / "seed1" / "run", PAPER, [1.0], device="cuda")  # not on the CPU
    warning = plan.cost_warning(paper_plan(tmp_path), PAPER)
    assert f"From epochs measured here before ({models / 'full' / 'seed0' / 'run'})" in warning
    # the 3 seeds of `full`, 300 epochs each, at 710 s an epoch
    assert f"about {3 * 300 * 710 / 3600:.1f} h for 3 of the 7 trainings" in warning


@pytest.mark.parametrize(("preset", "device"), [("quick", "cpu"), ("smoke", "cpu"), ("paper", "cuda")])
def test_no_warning_for_a_cpu_sized_plan_or_a_gpu(tmp_path: Path, preset: str, device: str):
    config = load(overrides={"preset": preset, "device": device})
    assert plan.cost_warning(paper_plan(tmp_path), config) is None


def test_auto_is_the_cpu_where_no_gpu_is_visible_and_the_jobs_run_here(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert plan.runs_on_cpu("auto") and plan.runs_on_cpu("cpu") and not plan.runs_on_cpu("cuda")
    assert not plan.runs_on_cpu("auto", jobs_run_here=False)  # a cluster's nodes decide
    assert plan.runs_on_cpu("cpu", jobs_run_here=False)


def test_overrides_are_written_as_they_are_typed():
    overrides = {"preset": "quick", "mirror": "../shared/data", "train": {"epochs": 8, "seeds": 1}}
    assert plan.command_line(overrides) == "preset=quick mirror=../shared/data train='{epochs: 8, seeds: 1}'"
    assert plan.command_line({"mirror": None}) == "mirror="


def test_the_report_hint_names_the_last_runs_config(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "give --report the same" in plan.report_hint({})  # no run here yet
    plan.record_run({"preset": "quick"}, {"preset": "quick", "mirror": "../shared/data"})
    recorded = yaml.safe_load(Path("results/run_config.yaml").read_text())
    assert recorded["overrides"] == {"preset": "quick", "mirror": "../shared/data"}
    hint = plan.report_hint({})
    assert "(no --config)" in hint
    assert hint.endswith("snakemake --report results/report.html --config preset=quick mirror=../shared/data")


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("(null)", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:8", 8), ("shard:4", 0)],
)
def test_the_gpus_of_a_node_are_read_from_sinfos_gres_column(gres: str, gpus: int):
    assert plan.node_gpus(gres) == gpus


def slurm_job(rule: str, gpus: int, partition: str | None = "debug") -> SimpleNamespace:
    resources = {"gpu": gpus} if partition is None else {"gpu": gpus, "slurm_partition": partition}
    return SimpleNamespace(rule=SimpleNamespace(name=rule), resources=resources)


def test_gpu_requests_beyond_the_partitions_nodes_are_named_with_the_fix(monkeypatch):
    """sinfo's answer is stood in for; tests/test_slurm.py runs the check against a real cluster."""
    declared = {"debug": 0, "gpu": 2}
    monkeypatch.setattr(plan, "partition_gpus", lambda p: (p or "debug", declared[p or "debug"]))
    jobs = [slurm_job("build_dsprites", 0), slurm_job("train_model", 1), slurm_job("evaluate_model", 1, None)]
    message = plan.gpu_shortfall(jobs, "auto")
    assert "partition debug declares (0, sinfo's GRES): evaluate_model 1, train_model 1 per job" in message
    assert "run with --config device=cpu (device is auto" in message
    assert plan.gpu_shortfall([slurm_job("train_model", 1, "gpu")], "auto") is None
    four = plan.gpu_shortfall([slurm_job("train_model", 4, "gpu")], "cuda")
    assert "partition gpu declares (2, sinfo's GRES): train_model 4 per job" in four
    assert "Set the gpu of those rules in your copy of the profile (set-resources) to at most 2" in four
    # device=cpu asks no GPU of a rule: one that still asks comes from the profile, and is named so
    assert "device=cpu" not in plan.gpu_shortfall([slurm_job("train_model", 4)], "cpu")
    assert plan.gpu_shortfall([slurm_job("train_model", 0)], "cpu") is None
