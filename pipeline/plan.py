"""What the workflow says once Snakemake knows the plan, before any job starts.

- **Cost before commitment.** A plan that trains at a scale sized for a GPU (preset paper or gpu) on a CPU
  gets a warning, in dry runs too: how many trainings of how many epochs, an estimate from the epochs
  measured here before where some are at hand (a run directory's metrics.csv at the same widths and batch
  size), and the fix. It does not stop the run.
- **The report's missing file.** Snakemake's "File ... marked for report but does not exist." gets its
  likely cause, a report asked for another config than the run's, and the --config of the last run here.
- **The last run's config**, written to results/run_config.yaml by every run that starts jobs, which the
  report's hint reads.
- **GPUs a SLURM partition does not have.** Jobs submitted to SLURM that ask for more GPUs than any node of
  their partition declares (sinfo's GRES) would each be refused by sbatch ("Invalid generic resource
  (gres) specification"): the run stops before the first with the fix, `device=cpu` on a partition
  without GPUs (a dry run warns).

Snakemake lays the plan out after it has built the DAG, in the "Job stats" record of its log (`run_info`,
dry runs included), and reports the missing file as a logged error: one filter on its logger acts on both.
Torch-free: the Snakefile installs it while it is parsed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

from pipeline.files import atomic_path

GPU_PRESETS = ("paper", "gpu")  # sized for a GPU: days of training on a laptop's cores
TRAINING_RULES = ("train_model", "train_judge", "train_audio_model")
WIDTH_KEYS = ("conv_channels", "frame_dim", "hidden_dim", "static_dim", "dynamic_dim")
RUN_CONFIG = Path("results/run_config.yaml")
REPORT_MISSING = "marked for report but does not exist"


def cuda_visible() -> bool:
    """Whether this host shows an NVIDIA GPU to a process, without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or shutil.which("nvidia-smi") is not None


def runs_on_cpu(device: str, jobs_run_here: bool = True) -> bool:
    """Whether `device` (config `device`) resolves to the CPU: `cpu` anywhere, `auto` where the jobs run on
    this host and it shows no GPU (on a cluster the compute nodes decide `auto`)."""
    return device == "cpu" or (device == "auto" and jobs_run_here and not cuda_visible())


def command_line(overrides: Mapping) -> str:
    """`--config` overrides as they are typed (`preset=quick train='{epochs: 8}'`); empty for none."""

    def typed(value: object) -> str:
        if isinstance(value, (Mapping, list)):
            return "'" + yaml.safe_dump(value, default_flow_style=True, width=10**6).strip() + "'"
        return "" if value is None else str(value)

    return " ".join(f"{key}={typed(value)}" for key, value in overrides.items())


def planned_epochs(params: Mapping) -> int:
    """The epochs a training job's params ask for: its row's own, else its section's."""
    section = params.get("train") or params.get("judge")
    return (params.get("variant") or {}).get("epochs") or section["epochs"]


def planned_widths(params: Mapping) -> dict:
    """The network widths a training job's params ask for, a row's own settings over its section's."""
    section = params.get("architecture") or params.get("judge") or {}
    own = params.get("variant") or {}
    return {key: own.get(key, section.get(key)) for key in WIDTH_KEYS if key in own or key in section}


def measured_epoch_seconds(output: str, params: Mapping) -> tuple[float, Path] | None:
    """Seconds per epoch (train and test, median over epochs) of an earlier CPU run of the same row
    (any training seed or latent size) at the same widths and batch size, and its run folder, if any."""
    pattern = "*/run/config.json" if "/models/" in output else "run/config.json"
    widths, batch = planned_widths(params), (params.get("train") or params.get("judge"))["batch_size"]
    for recorded in sorted(Path(output).parent.parent.glob(pattern)):
        metrics = recorded.parent / "metrics.csv"
        try:
            run = json.loads(recorded.read_text())
            rows = metrics.read_text().splitlines()[1:]
        except (OSError, ValueError):
            continue
        model = {key: run["model"].get(key) for key in widths}
        if run["train"]["device"] != "cpu" or run["train"]["batch_size"] != batch or model != widths:
            continue
        per_epoch = Counter()
        for row in rows:
            epoch, _, seconds = row.split(",")[:3]
            per_epoch[epoch] += float(seconds)
        if per_epoch:
            return statistics.median(per_epoch.values()), recorded.parent
    return None


def cost_warning(jobs: list, config: Mapping, jobs_run_here: bool = True) -> str | None:
    """The warning for planned training `jobs` (Snakemake jobs of TRAINING_RULES), or None when the plan is
    not sized for a GPU or does not run on a CPU."""
    if not jobs or config["preset"] not in GPU_PRESETS or not runs_on_cpu(config["device"], jobs_run_here):
        return None
    counts = Counter((job.rule.name, planned_epochs(job.params)) for job in jobs)
    listed = ", ".join(f"{n} {rule} of {epochs} epochs" for (rule, epochs), n in sorted(counts.items()))
    seconds, estimated, runs = 0.0, 0, {}
    for job in jobs:
        found = measured_epoch_seconds(job.output.get("output"), job.params)
        if found is not None:
            seconds += found[0] * planned_epochs(job.params)
            estimated += 1
            runs[str(found[1])] = True
    if estimated:
        where = ", ".join(list(runs)[:2]) + (", ..." if len(runs) > 2 else "")
        estimate = (
            f"From epochs measured here before ({where}): about {seconds / 3600:.1f} h for "
            f"{estimated} of the {len(jobs)} trainings, one at a time."
        )
    else:
        estimate = (
            "No epoch at these sizes has been measured here yet (`python benchmarks/bench_train.py` "
            "times the step); the papers' recipes train each model for hours on a GPU."
        )
    why = "device: cpu" if config["device"] == "cpu" else "device: auto, and this host shows no GPU"
    return (
        f"WARNING: this plan trains at the {config['preset']} preset's scale on the CPU ({why}): "
        f"{listed}. {estimate} On a CPU, run `--config preset=quick` (README: Table 1 in about an hour on "
        "2 cores) or submit to GPUs with a profile (README: Running it). The run goes on."
    )


def node_gpus(gres: str) -> int:
    """The GPUs in one entry of sinfo's GRES column (%G): `gpu:2`, `gpu:a100:4(S:0-1)`, `(null)`."""
    return max((int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres)), default=0)


def partition_gpus(partition: str | None) -> tuple[str, int] | None:
    """(name, the most GPUs one of its nodes declares) of SLURM partition `partition`, None for the
    default one, from sinfo; None where sinfo is missing, does not answer or lists no such partition."""
    try:
        listed = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split(maxsplit=1) for line in listed.stdout.splitlines() if len(line.split()) == 2]
    if partition is None:
        partition = next((name for name, _ in rows if name.endswith("*")), "").rstrip("*")
    gres = [entry for name, entry in rows if name.rstrip("*") == partition]
    return (partition, max(map(node_gpus, gres))) if gres else None


def gpu_shortfall(jobs: list, device: str) -> str | None:
    """The error for planned SLURM jobs that ask for more GPUs (their `gpu` resource) than any node of
    their partition (`slurm_partition`, else the default one) declares; None when every request fits or
    sinfo cannot tell."""
    asked: dict[tuple, int] = {}  # (partition as the job names it, rule) -> the most GPUs a job asks
    for job in jobs:
        gpus = int(job.resources.get("gpu", 0) or 0)
        if gpus:
            key = (job.resources.get("slurm_partition"), job.rule.name)
            asked[key] = max(asked.get(key, 0), gpus)
    declared = {named: partition_gpus(named) for named, _ in asked}  # -> (partition, GPUs) or None
    over: dict[tuple, dict] = {}  # (partition, its GPUs) -> {rule: GPUs asked}
    for (named, rule), gpus in sorted(asked.items(), key=lambda item: item[0][1]):
        if declared[named] is not None and gpus > declared[named][1]:
            over.setdefault(declared[named], {})[rule] = gpus
    if not over:
        return None
    (name, most), rules = min(over.items())
    problem = (
        f"seqdis: jobs ask SLURM for more GPUs than a node of partition {name} declares ({most}, sinfo's "
        f"GRES): {', '.join(f'{rule} {n}' for rule, n in rules.items())} per job; sbatch would refuse each "
        'one ("Invalid generic resource (gres) specification").'
    )
    if most == 0 and device != "cpu":
        return (
            f"{problem} On a partition without GPUs run with --config device=cpu (device is {device}: on a "
            "cluster `auto` asks for a GPU, README: On a SLURM cluster); for GPUs, set slurm_partition to a "
            "partition whose nodes have them (sinfo -o '%P %G')."
        )
    return (
        f"{problem} Set the gpu of those rules in your copy of the profile (set-resources) to at most "
        f"{most}, or set slurm_partition to a partition with more GPUs per node (sinfo -o '%P %G')."
    )


def record_run(config: Mapping, overrides: Mapping) -> None:
    """results/run_config.yaml: the --config of this run and the config it resolved to."""
    header = (
        f"# The config of the last run that started jobs here ({datetime.datetime.now():%Y-%m-%d %H:%M}).\n"
        f"# Its report: snakemake --report results/report.html --config {command_line(overrides)}\n"
    )
    body = yaml.safe_dump({"overrides": dict(overrides), "config": dict(config)}, sort_keys=False)
    with atomic_path(RUN_CONFIG) as tmp:
        tmp.write_text(header + body)


def report_hint(overrides: Mapping) -> str:
    """What Snakemake's missing-report-file error likely means here, and the fix."""
    given = command_line(overrides) or "no --config"
    hint = (
        f"\nseqdis: a report is built for the config it is given ({given}), and the file above is what "
        "that config's run writes: if your run had a --config (a preset, a mirror), give --report the same."
    )
    try:
        last = yaml.safe_load(RUN_CONFIG.read_text())["overrides"]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return hint
    return hint + (
        f" The last run here ({RUN_CONFIG}) had --config {command_line(last)}: "
        f"snakemake --report results/report.html --config {command_line(last)}"
    )


class PlanWatch(logging.Filter):
    """The filter on Snakemake's logger that acts on the plan (once) and on the report's missing file."""

    def __init__(self, workflow, config: Mapping, overrides: Mapping):
        super().__init__()
        self.workflow, self.config, self.overrides = workflow, config, overrides
        self.seen_plan = False

    def filter(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "event", None)
        if str(getattr(event, "value", event)) == "run_info" and not self.seen_plan:
            self._on_plan()
        elif record.levelno >= logging.ERROR and REPORT_MISSING in str(record.msg):
            record.msg = f"{record.msg}{report_hint(self.overrides)}"
        return True

    def _on_plan(self) -> None:
        dag = getattr(self.workflow, "dag", None)
        if dag is None:
            return
        self.seen_plan = True
        jobs = list(dag.needrun_jobs())
        if not jobs:
            return
        self._check_gpus(jobs)
        if not self.workflow.output_settings.dryrun:
            record_run(self.config, self.overrides)
        training = [job for job in jobs if job.rule.name in TRAINING_RULES]
        warning = cost_warning(training, self.config, self._jobs_run_here())
        if warning:
            logging.getLogger("snakemake.logging").warning(warning)

    def _check_gpus(self, jobs: list) -> None:
        """Stop a run whose jobs go to SLURM asking for GPUs their partition lacks; a dry run warns. Inside a
        SLURM job the jobs have been submitted already."""
        if self._jobs_run_here() or "SLURM_JOB_ID" in os.environ:
            return
        shortfall = gpu_shortfall(jobs, self.config["device"])
        if shortfall and self.workflow.output_settings.dryrun:
            logging.getLogger("snakemake.logging").warning(f"WARNING: {shortfall} (a real run stops here)")
        elif shortfall:
            from snakemake.exceptions import WorkflowError  # Snakemake prints it without a traceback

            raise WorkflowError(shortfall)

    def _jobs_run_here(self) -> bool:
        """Whether the jobs run on this host (a local executor), where this host's devices decide. A dry
        run's executor is Snakemake's "dryrun"; the intended one shows only in its choice of threads, which
        it forces on for a remote executor."""
        if self.workflow.output_settings.dryrun:
            return not self.workflow.execution_settings.use_threads
        return self.workflow.local_exec


def watch_plan(workflow, config: Mapping, overrides: Mapping) -> None:
    """Install `PlanWatch` on Snakemake's logger (from the Snakefile, once the config is resolved)."""
    logging.getLogger("snakemake.logging").addFilter(PlanWatch(workflow, config, overrides))
