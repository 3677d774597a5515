"""What the workflow says once Snakemake knows the plan, before any job starts.

- **Cost before commitment.** A plan that trains at a scale sized for a GPU (preset paper or gpu) on a CPU
  gets a warning, in dry runs too: how many trainings of how many epochs, an estimate from the epochs
  measured here before where some are at hand (a run directory's metrics.csv at the same widths and batch
  size), and the fix. It does not stop the run.
- **The report's missing file.** Snakemake's "File ... marked for report but does not exist." gets its
  likely cause, a report asked for another config than the run's, and the --config of the last run here.
- **The last run's config**, written to results/run_config.yaml by every run that starts jobs, which the
  report's hint reads.

Snakemake lays the plan out after it has built the DAG, in the "Job stats" record of its log (`run_info`,
dry runs included), and reports the missing file as a logged error: one filter on its logger acts on both.
Torch-free: the Snakefile installs it while it is parsed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import statistics
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
        if not self.workflow.output_settings.dryrun:
            record_run(self.config, self.overrides)
        training = [job for job in jobs if job.rule.name in TRAINING_RULES]
        warning = cost_warning(training, self.config, self._jobs_run_here())
        if warning:
            logging.getLogger("snakemake.logging").warning(warning)

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
