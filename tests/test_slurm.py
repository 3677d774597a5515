"""The workflow on a real SLURM cluster, through the profiles of workflow/profiles/ (marker `slurm`, left out
of `python -m pytest -q`; run them with `python -m pytest -q -m slurm`).

Each test copies the workflow files and a profile, fills the profile's partition and account from `sinfo`
and `sacctmgr` as README tells a user to, runs the smoke preset (moving dSprites, no download) through
`snakemake --profile`, and reads what SLURM's accounting (`sacct`) says of every job the run submitted.
Without a cluster that answers, each skips with the reason. `bash ../shared/tools/slurm_one_node.sh 0`
stands up a one-node cluster on this machine; `... 2` a node that declares two stand-in GPUs (GRES backed
by /dev/null and /dev/zero), so that sbatch accepts GPU requests on a machine without a GPU, and a job
that then asks torch for CUDA finds none.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_workflow, job_counts, snakemake
from test_reruns import MODEL, TRAINING_LOG, checked, same_weights, wait_for_epoch, weights

from pipeline.plan import partition_gpus

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SMOKE_CPU = ("--config", "preset=smoke", "device=cpu")
DAG_TIMEOUT = 1800  # the smoke DAG took 5-6 min on this machine's 2 cores
# Snakemake's line for each submitted job: "... submitted with SLURM jobid 12 (log: .../rule_train_model/..."
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/")
GPU_RULES = ("train_judge", "train_model", "evaluate_model", "diagnose_model")  # of the smoke DAG


@dataclass(frozen=True)
class Cluster:
    partition: str  # sinfo's default partition
    account: str  # the user's first account in sacctmgr
    gpus: int  # the most GPUs (GRES gpu) a node of the partition declares


def _ask(*command: str) -> str:
    """stdout of a SLURM client command; the test skips when it is missing or does not answer."""
    if shutil.which(command[0]) is None:
        pytest.skip(
            f"no SLURM cluster here: {command[0]} is not installed "
            "(bash ../shared/tools/slurm_one_node.sh 0 stands one up on this machine)"
        )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip(f"no SLURM cluster answers: {' '.join(command)} gave nothing within 20 s")
    if result.returncode != 0:
        pytest.skip(f"no SLURM cluster answers: {' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    _ask("sinfo", "-h", "-o", "%P")  # skips without a cluster that answers
    found = partition_gpus(None)
    if found is None:
        pytest.skip("sinfo lists no default partition")
    user = getpass.getuser()
    accounts = _ask("sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account").split()
    if not accounts:
        pytest.skip(f"sacctmgr lists no account of {user}")
    return Cluster(found[0], accounts[0], found[1])


def filled_profile(work: Path, name: str, cluster: Cluster, set_resources: dict | None = None) -> str:
    """workflow/profiles/NAME copied to WORK/profiles/NAME with the cluster's partition and account, as
    README tells a user to fill it; `set_resources` ({rule: {resource: value}}) goes over its own."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / name / "profile.yaml").read_text())
    profile["default-resources"].update(slurm_partition=cluster.partition, slurm_account=cluster.account)
    for rule, resources in (set_resources or {}).items():
        profile["set-resources"].setdefault(rule, {}).update(resources)
    folder = work / "profiles" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return str(folder.relative_to(work))


def submitted_jobs(output: str) -> dict[str, str]:
    """{SLURM job id: rule} of every job a run submitted, read from Snakemake's output."""
    return dict(SUBMITTED.findall(output))


def job_of_rule(output: str, rule: str) -> str:
    """The SLURM job id of the first job of `rule` that a run submitted."""
    return next(job for job, its_rule in submitted_jobs(output).items() if its_rule == rule)


def assert_stopped_before_any_job(result: subprocess.CompletedProcess, cluster: Cluster, fix: str) -> None:
    """The run asked for GPUs that no node of the partition declares: it stopped with the fix, unsubmitted."""
    assert result.returncode != 0 and not submitted_jobs(result.stdout), result.stdout[-3000:]
    problem = f"than a node of partition {cluster.partition} declares ({cluster.gpus}, sinfo's GRES)"
    assert problem in result.stdout and fix in result.stdout, result.stdout[-3000:]


def accounting(job_ids) -> dict[str, tuple[str, str]]:
    """{SLURM job id: (State, AllocTRES)} from sacct: what each job was given (ReqTRES says cpu=1 for a job
    given 8 CPUs by --cpus-per-gpu=8)."""
    listed = _ask("sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,AllocTRES")
    return {job: (state, tres) for job, state, tres in (line.split("|") for line in listed.splitlines())}


def test_a_cpu_partition_runs_the_smoke_dag_with_device_cpu(cluster: Cluster, tmp_path: Path):
    """README's command on a partition without GPUs: no job asks for one, each asks its rule's threads."""
    work = copy_workflow(tmp_path)
    profile = filled_profile(work, "slurm", cluster)
    if cluster.gpus == 0:  # what the setting is for: config.yaml's device, auto, asks each GPU rule for one
        default = snakemake("--profile", profile, "--config", "preset=smoke", cwd=work)
        assert_stopped_before_any_job(default, cluster, "run with --config device=cpu (device is auto")
    started = time.monotonic()
    result = snakemake("--profile", profile, *SMOKE_CPU, cwd=work, timeout=DAG_TIMEOUT)
    minutes = (time.monotonic() - started) / 60
    assert result.returncode == 0, result.stdout[-5000:]
    assert (work / "results" / "tables" / "dsprites.csv").stat().st_size > 0
    jobs = submitted_jobs(result.stdout)
    local = set(re.findall(r"^localrule (\w+):", result.stdout, flags=re.M))  # all, make_table
    planned = job_counts(result.stdout)
    assert len(jobs) == sum(n for rule, n in planned.items() if rule not in local)
    states = accounting(jobs)
    assert {state for state, _ in states.values()} == {"COMPLETED"}, states
    for job, (_, tres) in states.items():
        # the profile's cpus_per_gpu: 8 of train_model is no request without a GPU: the rule's threads are
        assert "gres/gpu" not in tres and "cpu=1," in tres, (jobs[job], tres)
    print(f"smoke DAG on SLURM, device=cpu: {len(jobs)} jobs COMPLETED in {minutes:.1f} min")


@pytest.mark.parametrize("name", ["slurm", "slurm-multigpu"])
def test_device_cuda_asks_each_gpu_job_for_gpus_the_node_declares(
    cluster: Cluster, tmp_path: Path, name: str
):
    """With device=cuda each job of a GPU rule asks for its GPUs: one, or with the multi-GPU profile its
    trainings every GPU of a node. Beyond what a node of the partition declares, the run stops before its
    first job with the fix; within it, sbatch accepts every request. The GPUs here are stand-ins, so the
    jobs then fail on torch's missing CUDA: what is asserted is the submission, not the training."""
    work = copy_workflow(tmp_path)
    cuda = ("--config", "preset=smoke", "device=cuda")
    shipped = yaml.safe_load((REPO / "workflow" / "profiles" / name / "profile.yaml").read_text())
    per_training = shipped["set-resources"]["train_model"].get("gpu", 1)  # the multi-GPU profile's: 4
    cpus_per_gpu = shipped["set-resources"]["train_model"]["cpus_per_gpu"]
    profile = filled_profile(work, name, cluster)
    if per_training > cluster.gpus:
        stopped = snakemake("--profile", profile, *cuda, cwd=work)
        fix = "run with --config device=cpu" if cluster.gpus == 0 else f"at most {cluster.gpus}"
        assert_stopped_before_any_job(stopped, cluster, fix)
        if cluster.gpus == 0:
            return
        per_training = cluster.gpus  # README: set the multi-GPU profile's gpu to the GPUs of one node
        gpus = {"gpu": per_training}
        profile = filled_profile(work, name, cluster, {"train_model": gpus, "train_judge": gpus})
    result = snakemake("--profile", profile, *cuda, cwd=work, timeout=DAG_TIMEOUT)
    assert result.returncode != 0, "a job asked torch for CUDA on a node without any and did not fail"
    assert "sbatch: error" not in result.stdout and "Invalid generic resource" not in result.stdout
    jobs = submitted_jobs(result.stdout)
    assert {"train_judge", "train_model"} <= set(jobs.values()), jobs
    states = accounting(jobs)
    assert states[job_of_rule(result.stdout, "build_dsprites")][0] == "COMPLETED"
    for job, (state, tres) in states.items():
        rule = jobs[job]
        if rule not in GPU_RULES:  # label_flow's DIS runs on the CPU: no GPU asked
            assert "gres/gpu" not in tres, (rule, state, tres)
            continue
        gpus = per_training if rule in ("train_model", "train_judge") else 1
        assert f"gres/gpu={gpus}," in tres and state == "FAILED", (rule, state, tres)
        if rule in ("train_model", "train_judge"):  # and the profile's cpus_per_gpu for each GPU
            assert f"cpu={gpus * cpus_per_gpu}," in tres, (rule, tres)
    judge_log = (work / "logs" / "train_judge" / "dsprites.log").read_text()
    assert "torch sees no CUDA device" in judge_log, judge_log


def test_a_cancelled_training_resumes_to_the_uninterrupted_model(cluster: Cluster, tmp_path: Path):
    """scancel of a training mid-run: the same command again finishes the DAG, the training resumes from
    its checkpoint, and the model equals that of a run never interrupted."""
    config = (*SMOKE_CPU, "train={epochs: 24}")
    whole = copy_workflow(tmp_path / "whole")
    checked(snakemake("--cores", "1", MODEL, *config, cwd=whole))

    work = copy_workflow(tmp_path / "cancelled")
    command = [sys.executable, "-m", "snakemake", "--profile", filled_profile(work, "slurm", cluster)]
    command += [MODEL, *config]
    output = work / "snakemake.out"
    with open(output, "w") as out:
        run = subprocess.Popen(command, cwd=work, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_epoch(work / Path(MODEL).parent / "run" / "checkpoint.pt", 3, run, timeout=600)
            training = job_of_rule(output.read_text(), "train_model")
            subprocess.run(["scancel", training], check=True)
            assert run.wait(timeout=600) != 0
        finally:
            run.kill()
    assert accounting([training])[training][0] == f"CANCELLED by {os.getuid()}"  # our scancel
    log = (work / TRAINING_LOG).read_text()
    assert f"SLURM job {training} was stopped (scancel, preemption or its node going down" in log, log
    assert not (work / MODEL).exists()

    rerun = checked(snakemake(*command[3:], cwd=work, timeout=DAG_TIMEOUT))
    log = (work / TRAINING_LOG).read_text()
    assert "resuming results/models/dsprites/dsvae_full/seed0/run/checkpoint.pt after epoch" in log, log
    assert job_counts(rerun) == {"train_model": 1}
    assert same_weights(weights(work / MODEL), weights(whole / MODEL))


def test_a_job_at_its_time_limit_names_its_rule_and_the_resource_to_raise(cluster: Cluster, tmp_path: Path):
    work = copy_workflow(tmp_path)
    profile = filled_profile(work, "slurm", cluster, {"train_model": {"runtime": 1}})  # SLURM's minimum
    config = (*SMOKE_CPU, "train={epochs: 100000}")  # far more than a minute
    result = snakemake("--profile", profile, MODEL, *config, cwd=work, timeout=DAG_TIMEOUT)
    assert result.returncode != 0
    training = job_of_rule(result.stdout, "train_model")
    assert accounting([training])[training][0] == "TIMEOUT"
    wildcards = {"dataset": "dsprites", "method": "dsvae_full", "training_seed": "0"}
    expected = (
        f"rule train_model {wildcards}: SLURM job {training} reached its time limit (1:00): raise the rule's "
        "`runtime` (minutes) in the set-resources of your profile (train_model: {runtime: ...};"
    )
    assert expected in (work / TRAINING_LOG).read_text()
    assert expected in result.stdout  # the profile's show-failed-logs prints the job's log
