"""The Snakemake workflow through its CLI: lint, the paper-scale DAG, profiles, config errors, a smoke run.

Dry runs and the smoke run work in a copy of the workflow files (Snakefile, config.yaml, workflow/, envs/)
under a temporary folder, so neither the job counts nor the run depend on, or touch, the repository's
results/. The package is pip-installed, so the copied Snakefile imports `pipeline` from the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch
import yaml
from conftest import WORKFLOW_CONFIG, call_with_config, copy_workflow, job_counts, snakemake

from pipeline.evaluate.columns import TABLE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SMOKE = yaml.safe_load((REPO / "workflow" / "presets" / "smoke.yaml").read_text())
# Table 1 without a MUG copy (mug.root null): MUG is licensed, so the table leaves its column out
TABLE1_DATASETS = [d for d in CONFIG["table_datasets"]["table1"] if d != "mug"]
# S3VAE's L_DFP on MUG trains on results/labels/mug/landmarks.h5 (config dfp_labels): a DAG with a MUG
# model needs the rule that writes it
LANDMARKS = "rule label_landmarks:" in (REPO / "workflow" / "rules" / "labels.smk").read_text()
# The rules whose jobs compute with torch on the GPU when config device lets them (requested_gpus)
GPU_RULES = ("train_model:", "train_judge:", "evaluate_model:", "diagnose_model:")
needs_landmarks = pytest.mark.skipif(
    not LANDMARKS,
    reason="no rule label_landmarks yet: a MUG model's DAG needs results/labels/mug/landmarks.h5",
)


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflow without any results: every dry run lists the whole DAG."""
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def test_snakemake_parses_every_target_without_torch(clean_copy: Path, tmp_path: Path):
    """The Snakefile and its rule files import no torch (nor any model): a dry run of every table works
    where `import torch` fails, so parsing stays fast and a login node needs no GPU stack."""
    blocked = tmp_path / "blocked" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        'raise ImportError("torch is blocked: the Snakefile must not import it")'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(REPO)])}
    tables = ["table1", "dsprites", "dsvae_table1", "dsvae_dynamics"] + (["table2"] if LANDMARKS else [])
    targets = [f"results/tables/{table}.csv" for table in tables]
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *targets, "results/tables/table3.csv"],
        cwd=clean_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "train_model" in result.stdout and "train_audio_model" in result.stdout


def test_lint_is_clean():
    result = snakemake("--lint", cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Lints for" not in result.stdout, result.stdout[-3000:]


def test_every_conda_env_file_exists():
    """`--lint` and `-n` do not notice a wrong `conda:` path: resolve each against its rule file."""
    found = 0
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        # `conda:` then a quoted path, on the same line or the next one
        directives = re.findall(r"^[ \t]*conda:[ \t]*\n?[ \t]*(.*)$", text, flags=re.M)
        paths = [m.group(1) for d in directives if (m := re.fullmatch(r"[\"']([^\"']+)[\"']", d.strip()))]
        assert len(paths) == len(directives), (
            f"{smk.name}: a conda: directive is not a plain path: {directives}"
        )
        for path in paths:
            env = (smk.parent / path).resolve()
            assert env.is_file(), f"{smk.name}: conda env {path} resolves to {env}, which does not exist"
            assert "dependencies" in yaml.safe_load(env.read_text()), f"{env} lists no dependencies"
            found += 1
    assert found >= 7  # one per rule that runs code


@pytest.mark.slow
def test_default_config_dry_run_is_the_paper_dag(clean_copy: Path):
    result = snakemake("-n", "results/tables/table1.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    n_methods, seeds = len(CONFIG["methods"]), CONFIG["train"]["seeds"]
    assert n_methods == 10 and TABLE1_DATASETS == ["sprites", "smmnist"] and seeds == 3
    assert CONFIG["table_datasets"]["table1"] == [*TABLE1_DATASETS, "mug"] and CONFIG["mug"]["root"] is None
    assert {"mocogan", "dsvae", "dsvae_full", "unordered"} <= set(CONFIG["methods"])
    assert job_counts(result.stdout) == {
        "download_source": 2,
        "build_sprites": 1,
        "build_smmnist": 1,
        "label_flow": 2,
        "train_judge": 2,
        "train_model": 2 * n_methods * seeds,
        "evaluate_model": 2 * n_methods * seeds,
        "diagnose_model": 2 * (n_methods - 1) * seeds,  # every row but MoCoGAN, which has no encoder
        "make_table": 1,
    }
    for dataset in TABLE1_DATASETS:
        for method in CONFIG["methods"]:
            for seed in range(seeds):
                assert f"results/models/{dataset}/{method}/seed{seed}/model.pt" in result.stdout


@pytest.mark.slow
def test_quick_table1_leaves_smmnist_out_and_one_override_puts_it_back(clean_copy: Path):
    quick = snakemake("-n", "results/tables/table1.csv", "--config", "preset=quick", cwd=clean_copy)
    assert quick.returncode == 0, quick.stdout[-3000:]
    counts = job_counts(quick.stdout)
    assert "build_smmnist" not in counts and counts["train_judge"] == 1
    assert "results/models/smmnist" not in quick.stdout
    back = snakemake(
        "-n",
        "results/tables/table1.csv",
        "--config",
        "preset=quick",
        'leave_out={"smmnist": ""}',
        cwd=clean_copy,
    )
    assert back.returncode == 0, back.stdout[-3000:]
    counts_back = job_counts(back.stdout)
    assert counts_back["build_smmnist"] == 1 and counts_back["train_judge"] == 2
    assert counts_back["train_model"] == 2 * counts["train_model"]


@pytest.mark.slow
def test_default_target_is_every_table_and_figure_at_paper_scale(clean_copy: Path):
    result = snakemake("-n", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    n_methods, n_dynamics = len(CONFIG["methods"]), len(CONFIG["dynamics_methods"])
    seeds = CONFIG["train"]["seeds"]
    video = [d for t in CONFIG["tables"] for d in CONFIG["table_datasets"].get(t, []) if d != "mug"]
    assert video == ["sprites", "smmnist", "dsprites"]  # table1 (without a MUG copy) and dsprites
    n_unordered = sum(CONFIG["variants"][m].get("family") == "unordered" for m in CONFIG["methods"])
    assert job_counts(result.stdout) == {
        "download_source": 2,
        "build_sprites": 1,
        "build_smmnist": 1,
        "build_dsprites": 1,
        "build_bouncing": 1,
        "label_flow": len(video),
        "train_judge": len(video),
        "train_model": (len(video) * n_methods + n_dynamics) * seeds,
        "evaluate_model": len(video) * n_methods * seeds,
        "diagnose_model": len(video) * (n_methods - 1) * seeds,
        "plot_figures": len(video) * n_methods,
        "plot_latent_space": len(video) * n_unordered,
        "plot_flow_directions": 1,  # Sprites' left- and right-facing walks
        "make_table": 2,
        "make_dsvae_table1": 1,
        "evaluate_dynamics": 1,
        "all": 1,
    }
    for method in CONFIG["dynamics_methods"]:
        assert f"results/models/bouncing/{method}/seed{seeds - 1}/model.pt" in result.stdout


@pytest.mark.slow
def test_dsvae_tables_are_their_own_targets(clean_copy: Path):
    result = snakemake("-n", "results/tables/dsvae_table1.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {
        "download_source": 1,
        "build_sprites": 1,
        "train_judge": 1,
        "train_model": len(CONFIG["dsvae_table1_methods"]) * CONFIG["train"]["seeds"],
        "make_dsvae_table1": 1,
    }  # no flow labels: DSVAE does not train on them
    result = snakemake("-n", "results/tables/dsvae_dynamics.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    assert job_counts(result.stdout) == {
        "build_bouncing": 1,
        "train_model": len(CONFIG["dynamics_methods"]) * CONFIG["train"]["seeds"],
        "evaluate_dynamics": 1,
    }


@pytest.mark.slow
def test_dsprites_table_needs_no_download(clean_copy: Path):
    result = snakemake("-n", "results/tables/dsprites.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    counts = job_counts(result.stdout)
    assert "download_source" not in counts
    assert counts["build_dsprites"] == 1
    assert counts["train_model"] == len(CONFIG["methods"]) * CONFIG["train"]["seeds"]


@pytest.mark.slow
def test_slurm_profile_dry_run(clean_copy: Path):
    result = snakemake(
        "-n", "--profile", "workflow/profiles/slurm", "results/tables/table1.csv", cwd=clean_copy
    )
    assert result.returncode == 0, result.stdout[-3000:]
    trainings = len(TABLE1_DATASETS) * len(CONFIG["methods"]) * CONFIG["train"]["seeds"]
    assert job_counts(result.stdout)["train_model"] == trainings
    # The profile as committed keeps its placeholders: the dry run warns and names the keys to fill.
    assert "WARNING: the profile leaves default-resources slurm_partition=YOUR_PARTITION" in result.stdout
    assert "fill in slurm_account, slurm_partition" in result.stdout
    # device auto (config.yaml) asks one GPU for each job that computes with torch: the compute node decides
    gpu_jobs = [job for job in result.stdout.split("rule ")[1:] if job.startswith(GPU_RULES)]
    assert len(gpu_jobs) > trainings and all("gpu=1" in job for job in gpu_jobs)
    on_cpu = snakemake(
        "-n",
        "--profile",
        "workflow/profiles/slurm",
        "results/tables/dsprites.csv",
        "--config",
        "device=cpu",
        cwd=clean_copy,
    )
    assert on_cpu.returncode == 0, on_cpu.stdout[-3000:]
    jobs = on_cpu.stdout.split("rule ")[1:]
    assert {job.split(":")[0] for job in jobs} >= {"train_model", "train_judge", "evaluate_model"}
    assert not any("gpu=1" in job for job in jobs)


@pytest.mark.slow
def test_multigpu_profile_gives_each_training_job_four_gpus_of_one_node(clean_copy: Path):
    result = snakemake(
        "-n", "--profile", "workflow/profiles/slurm-multigpu", "results/tables/dsprites.csv", cwd=clean_copy
    )
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = result.stdout.split("rule ")[1:]
    trainings = [job for job in jobs if job.startswith(("train_model:", "train_judge:"))]
    assert len(trainings) == len(CONFIG["methods"]) * CONFIG["train"]["seeds"] + 1
    assert all("gpu=4, cpus_per_gpu=8" in job for job in trainings)
    assert not any("gpu=4" in job for job in jobs if job.startswith("evaluate_model:"))


@pytest.mark.slow
def test_slurm_profile_with_placeholders_stops_a_real_run_before_any_job(clean_copy: Path):
    result = snakemake("--profile", "workflow/profiles/slurm", "results/tables/dsprites.csv", cwd=clean_copy)
    assert result.returncode != 0
    assert "slurm_partition=YOUR_PARTITION" in result.stdout, result.stdout[-3000:]
    assert "workflow/profiles/slurm/profile.yaml" in result.stdout
    assert "Job stats:" not in result.stdout and not (clean_copy / "results").exists()


@pytest.mark.slow
def test_wrong_config_key_on_the_command_line_fails_with_the_schema_message(clean_copy: Path):
    result = snakemake("-n", "--config", 'train={"epochz": 1}', cwd=clean_copy)
    assert result.returncode != 0
    assert "epochz" in result.stdout, result.stdout[-3000:]
    assert "config.schema.yaml" in result.stdout
    assert "Job stats:" not in result.stdout


@pytest.mark.slow
def test_nested_config_values_on_the_command_line_are_read_by_the_schema_types(clean_copy: Path):
    """Snakemake hands `train='{epochs: 3}'` over as strings; the README's nested --config works."""
    nested = ["train={epochs: 3, bf16: false}", "evaluate={repeats: 2}", "model={conv_channels: [8, 16]}"]
    result = snakemake(
        "-n", "results/tables/dsprites.csv", "--config", "preset=smoke", *nested, cwd=clean_copy
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "is not of type" not in result.stdout and "Job stats:" in result.stdout
    wrong = snakemake("-n", "--config", "train={epochs: ten}", cwd=clean_copy)
    assert wrong.returncode != 0 and "train/epochs: 'ten' is not of type 'integer'" in wrong.stdout


@pytest.mark.slow
def test_a_missing_mirror_stops_the_dry_run_with_the_key_and_the_fix(clean_copy: Path):
    result = snakemake("-n", "--config", "mirror=/nonexistent/dir", cwd=clean_copy)
    assert result.returncode != 0
    assert "mirror /nonexistent/dir is not a folder" in result.stdout, result.stdout[-3000:]
    assert "--config mirror=../shared/data" in result.stdout and "Job stats:" not in result.stdout


@pytest.mark.slow
def test_a_damaged_dataset_fails_its_job_with_one_error_line_and_the_fix(tmp_path: Path):
    """A truncated results/data/dsprites.h5 that Snakemake takes as up to date: the downstream job prints
    the file and the fix once (its traceback is in the rule's log), and --forcerun remakes the file."""
    from pipeline.data.dsprites import build_dsprites

    work = copy_workflow(tmp_path)
    data = work / "results" / "data" / "dsprites.h5"
    call_with_config(
        build_dsprites,
        WORKFLOW_CONFIG,
        output=data,
        train_sequences=4,
        test_sequences=2,
        frames=3,
        image_size=32,
    )
    os.truncate(data, data.stat().st_size // 2)
    target, config = "results/labels/dsprites/flow.h5", ["--config", "preset=smoke"]
    result = snakemake("--cores", "1", target, *config, cwd=work)
    assert result.returncode != 0
    out = result.stdout
    assert (
        out.count("ERROR: label_flow failed: DamagedFileError: results/data/dsprites.h5 is truncated") == 1
    ), out
    assert out.count("--forcerun build_dsprites") == 1 and "Traceback" not in out
    log = (work / "logs" / "label_flow" / "dsprites.log").read_text()
    assert "Traceback (most recent call last)" in log and "results/data/dsprites.h5 is truncated" in log
    assert not (work / target).exists()
    assert not [p.name for p in (work / "results").rglob("*.tmp-*")], "a temporary file was left"
    again = snakemake("-n", target, *config, cwd=work)  # Snakemake keeps the damaged file ...
    assert job_counts(again.stdout) == {"label_flow": 1}
    fixed = snakemake(
        "-n", target, "--forcerun", "build_dsprites", *config, cwd=work
    )  # ... the fix remakes it
    assert job_counts(fixed.stdout) == {"build_dsprites": 1, "label_flow": 1}


@pytest.mark.slow
def test_the_rule_graph_is_dot(clean_copy: Path):
    """README § Drawing the DAG: targets before --dag / --rulegraph (both take an optional value)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/tables/dsprites.csv", "--rulegraph"],
        cwd=clean_copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("digraph snakemake_dag {") and result.stdout.rstrip().endswith("}")
    for rule in ("build_dsprites", "label_flow", "train_judge", "train_model", "make_table"):
        assert rule in result.stdout
    if shutil.which("dot"):
        svg = subprocess.run(
            ["dot", "-Tsvg"], input=result.stdout, capture_output=True, text=True, timeout=60
        )
        assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr
    assert "--rulegraph | dot -Tsvg" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_preset_on_the_command_line_selects_the_methods(clean_copy: Path):
    result = snakemake("-n", "results/tables/table1.csv", "--config", "preset=smoke", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    trainings = len(TABLE1_DATASETS) * len(SMOKE["methods"]) * SMOKE["train"]["seeds"]
    assert job_counts(result.stdout)["train_model"] == trainings


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path: Path):
    """The zero-download path: moving dSprites through every stage, with no data mirror."""
    work = copy_workflow(tmp_path)
    target = "results/tables/dsprites.csv"
    figures = [
        f"results/figures/dsprites/{m}_{kind}.png"
        for m in SMOKE["methods"]
        for kind in ("swap", "generation")
    ]
    config = ["--config", "preset=smoke"]
    assert SMOKE["tables"] == ["dsprites"]
    result = snakemake("--cores", "2", *config, cwd=work, timeout=600)  # the default target: all
    assert result.returncode == 0, result.stdout[-5000:]
    assert not (work / "resources").exists(), "the dSprites path must not download anything"

    table = pd.read_csv(work / target)
    assert list(table.columns) == TABLE_COLUMNS
    assert (table["source"] == "seqdis").all() and (table["dataset"] == "dsprites").all()
    assert (table["seeds"] == SMOKE["train"]["seeds"]).all()
    assert sorted(table["method"].unique()) == sorted(SMOKE["methods"])
    for method in SMOKE["methods"]:
        metrics = set(table.loc[table["method"] == method, "metric"])
        assert {"Acc", "IS", "H(y|x)", "H(y)", "Acc/fixed_dynamics", "Acc/fixed_static"} <= metrics
        assert {"Acc/fixed_static/shape", "Acc/fixed_static/color", "Acc/fixed_static/scale"} <= metrics
    assert table["value"].notna().all()
    markdown = (work / "results" / "tables" / "dsprites.md").read_text()
    assert markdown.startswith("# Moving dSprites: generation scored by the judge")  # from the file's title
    assert "linear probes of the posterior means" in markdown and "judge on reconstructions" in markdown
    diagnostics = work / "results" / "metrics" / "dsprites" / "full" / "seed0_diagnostics.csv"
    assert set(pd.read_csv(diagnostics)["diagnostic"]) == {"ceiling", "swap", "probe", "loss"}
    for figure in figures + [
        "results/figures/dsprites/unordered_zgrid.png",
        "results/figures/dsprites/unordered_ztrace.png",
    ]:
        assert (work / figure).stat().st_size > 0, figure
    judge = pd.read_csv(work / "results" / "judges" / "dsprites" / "accuracy.csv")
    assert set(judge["head"]) == {"motion", "rotation", "shape", "color", "scale"}
    assert judge["accuracy"].between(0, 1).all()
    saved = torch.load(work / "results" / "judges" / "dsprites" / "judge.pt", weights_only=False)
    assert saved["config"]["temperature"] == dict.fromkeys(judge["head"], 1.0), "single factors: T = 1"

    rerun = snakemake("-n", target, *figures, "--forcerun", "train_model", *config, cwd=work)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    counts = job_counts(rerun.stdout)
    n, seeds = len(SMOKE["methods"]), SMOKE["train"]["seeds"]
    assert counts["train_model"] == n * seeds and counts["evaluate_model"] == n * seeds
    assert counts["plot_figures"] == n
    assert counts["make_table"] == 1
    for upstream in ("build_dsprites", "label_flow", "train_judge"):
        assert upstream not in counts, f"--forcerun train_model reran {upstream}"

    # README's report command, with the run's --config, holds every table and figure of the run.
    report = snakemake("--report", "results/report.html", *config, cwd=work)
    assert report.returncode == 0, report.stdout[-3000:]
    text = (work / "results" / "report.html").read_text()
    for name in ["dsprites.csv", "dsprites.html", "accuracy.csv", *(Path(f).name for f in figures)]:
        assert name in text, f"the report does not hold {name}"
    assert "Static/dynamic swap" in text and "Results table dsprites" in text  # the captions
    rendered = (work / "results" / "tables" / "dsprites.html").read_text()
    assert "<table>" in rendered and "<h1>Moving dSprites: generation scored by the judge</h1>" in rendered

    # A licensed dataset without its copy is left out of a table that has others, and the table says so.
    with_mug = ["--config", "preset=smoke", "table_datasets={dsprites: [dsprites, mug]}"]
    noted = snakemake("--cores", "1", target, *with_mug, cwd=work)
    assert noted.returncode == 0, noted.stdout[-3000:]
    assert job_counts(noted.stdout) == {"make_table": 1}  # its params changed; nothing of MUG is built
    markdown = (work / "results" / "tables" / "dsprites.md").read_text()
    assert "## mug: left out\n\nNot built: MUG is licensed: its column needs your copy, mug.root" in markdown


@pytest.mark.slow
def test_s3vae_full_trains_on_real_faces_with_the_landmark_distances_as_its_dfp_target(
    tmp_path: Path, mirror: Path
):
    """The GRID samples from the mirror: face crops, landmark labels, their figure, S3VAE full (smoke)."""
    work = copy_workflow(tmp_path)
    model = work / "results/models/grid/full/seed0/model.pt"
    figure = "results/figures/grid/landmarks.png"
    result = snakemake(
        "--cores", "2", str(model.relative_to(work)), figure,
        "--config", "preset=smoke", f"mirror={mirror}", cwd=work, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:]
    labels = h5py.File(work / "results/labels/grid/landmarks.h5")
    assert labels.attrs["detection_rate_train"] > 0.95
    config = torch.load(model, weights_only=False)["config"]
    assert config["dfp_target"] == "landmark_distances" and config["dfp_classes"] == 3
    assert list(config["dfp_target_mean"]) == pytest.approx(list(labels.attrs["distance_mean"]))
    metrics = pd.read_csv(model.parent / "run" / "metrics.csv")
    assert metrics["dfp"].notna().all() and (metrics["dfp"] > 0).all()
    assert (work / figure).stat().st_size > 0


@pytest.mark.slow
def test_table3_dry_run_is_the_audio_dag(clean_copy: Path):
    result = snakemake("-n", "results/tables/table3.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    audio = CONFIG["audio"]
    n_models = len(CONFIG["audio_datasets"]) * len(audio["methods"]) * len(audio["dims"])
    assert n_models == 10  # fsdd x (s3vae, dsvae, dsvae_full, fhvae_a0, fhvae_a10) x (16, 64)
    assert job_counts(result.stdout) == {
        "download_source": 1,
        "build_audio": 1,
        "label_silence": 1,
        "train_audio_model": n_models,
        "evaluate_verification": n_models,
        "convert_voices": n_models,
        "make_table3": 1,
    }
    assert "results/models/fsdd/fhvae_a10/z64/model.pt" in result.stdout
    assert "results/models/fsdd/dsvae_full/z16/model.pt" in result.stdout


@pytest.mark.slow
def test_timit_without_its_folder_fails_before_any_rule(clean_copy: Path):
    result = snakemake("-n", "--config", "audio_datasets=[timit]", cwd=clean_copy)
    assert result.returncode != 0
    assert "timit.root" in result.stdout and "LDC93S1" in result.stdout, result.stdout[-3000:]


def test_build_mug_without_its_copy_stops_with_where_to_get_it(clean_copy: Path):
    """MUG is licensed: without mug.root its build stops with one error line saying where to request it and
    what to set."""
    result = snakemake("--cores", "1", "results/data/mug.h5", cwd=clean_copy)
    assert result.returncode != 0
    line = (
        "ERROR: build_mug failed: ValueError: mug.root is null: MUG (the MUG Facial Expression Database) is"
    )
    assert result.stdout.count(line) == 1, result.stdout[-3000:]
    assert "https://mug.ee.auth.gr/fed/" in result.stdout and "--config mug='{root: " in result.stdout
    assert not (clean_copy / "results" / "data" / "mug.h5").exists()


@pytest.mark.slow
@needs_landmarks
def test_table2_without_a_mug_copy_lists_its_whole_dag(clean_copy: Path):
    """Table 2 is MUG's alone, so it keeps MUG without mug.root: the dry run lists every job (a real run
    stops at build_mug, above)."""
    result = snakemake("-n", "results/tables/table2.csv", cwd=clean_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    rows, seeds = CONFIG["table_methods"]["table2"], CONFIG["train"]["seeds"]
    assert rows == ["no_scc", "no_dfp", "no_mi", "full"]  # S3VAE Table 2
    counts = job_counts(result.stdout)
    assert counts["build_mug"] == 1 and counts["train_judge"] == 1 and counts["make_table"] == 1
    assert counts["train_model"] == counts["evaluate_model"] == counts["diagnose_model"] == len(rows) * seeds
    assert "download_source" not in counts and "label_flow" not in counts  # L_DFP: landmarks on faces
    assert "results/labels/mug/landmarks.h5" in result.stdout
    for method in rows:
        assert f"results/models/mug/{method}/seed{seeds - 1}/model.pt" in result.stdout


@pytest.mark.slow
@needs_landmarks
def test_table1_holds_mug_only_with_its_copy(clean_copy: Path, tmp_path: Path):
    without = snakemake("-n", "results/tables/table1.csv", cwd=clean_copy)
    assert "build_mug" not in job_counts(without.stdout) and "results/data/mug.h5" not in without.stdout
    root = tmp_path / "subjects3"  # a dry run reads nothing of the copy
    root.mkdir()
    with_copy = snakemake(
        "-n", "results/tables/table1.csv", "--config", f"mug={{root: {root}}}", cwd=clean_copy
    )
    assert with_copy.returncode == 0, with_copy.stdout[-3000:]
    counts, seeds = job_counts(with_copy.stdout), CONFIG["train"]["seeds"]
    assert counts["build_mug"] == 1 and counts["train_judge"] == len(TABLE1_DATASETS) + 1
    assert counts["train_model"] == (len(TABLE1_DATASETS) + 1) * len(CONFIG["methods"]) * seeds
    for method in CONFIG["methods"]:
        assert f"results/models/mug/{method}/seed0/model.pt" in with_copy.stdout


@pytest.mark.slow
@needs_landmarks
def test_mug_end_to_end(tmp_path: Path, mug_root: Path):
    """MUG from a copy in the database's layout (real GRID faces, tests/mug_fixture.py) through landmark
    labels, judge, every row of Table 2 and of Table 1, and the report. To keep it short (28 jobs, 1.7 min
    on 2 cores): Table 1's MUG column alone and one training seed per row."""
    work = copy_workflow(tmp_path)
    targets = ["results/tables/table2.csv", "results/tables/table1.csv", "results/figures/mug/landmarks.png"]
    config = ["--config", "preset=smoke", f"mug={{root: {mug_root}}}", "table_datasets={table1: [mug]}"]
    config += ["train={seeds: 1}"]
    result = snakemake("--cores", "2", *targets, *config, cwd=work, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:]
    assert not (work / "resources").exists(), "MUG is read from mug.root, never downloaded"
    judge = pd.read_csv(work / "results" / "judges" / "mug" / "accuracy.csv")
    assert set(judge["head"]) == {"expression", "identity"}
    for table, rows, published in (
        ("table2", CONFIG["table_methods"]["table2"], ["No L_SCC", "No L_DFP", "No L_MI", "Full model"]),
        ("table1", SMOKE["methods"], ["MoCoGAN", "DSVAE", "baseline", "full model", "baseline-sv"]),
    ):
        frame = pd.read_csv(work / "results" / "tables" / f"{table}.csv")
        assert list(frame.columns) == TABLE_COLUMNS and set(frame["dataset"]) == {"mug"}
        ours = frame[frame["source"] == "seqdis"]
        assert sorted(ours["method"].unique()) == sorted(rows) and ours["value"].notna().all()
        for method in rows:  # scored as S3VAE scores MUG: z_1:T kept, z_f drawn, the expression judged
            metrics = set(ours.loc[ours["method"] == method, "metric"])
            assert {"Acc", "IS", "H(y|x)", "H(y)", "Acc/fixed_dynamics"} <= metrics
            assert not [m for m in metrics if "fixed_static" in m]
        theirs = frame.loc[frame["source"] != "seqdis", "method"]
        assert list(dict.fromkeys(theirs)) == [f"published: {row}" for row in published]
        markdown = (work / "results" / "tables" / f"{table}.md").read_text()
        assert markdown.startswith("# MUG: generation scored by the judge") and "## MUG (mug)" in markdown
    report = snakemake(*targets, "--report", "results/report.html", *config, cwd=work)
    assert report.returncode == 0, report.stdout[-3000:]
    text = (work / "results" / "report.html").read_text()
    assert "table2.html" in text and "table1.html" in text and "S3VAE's ablation on MUG" in text
    assert "landmarks.png" in text and "The landmark pseudo labels of mug" in text


@pytest.mark.slow
def test_smoke_dynamics_study_end_to_end(tmp_path: Path):
    """DSVAE section 4.3 from the simulated bouncing balls to its table and plot (no download)."""
    work = copy_workflow(tmp_path)
    target = "results/tables/dsvae_dynamics.csv"
    result = snakemake("--cores", "2", target, "--config", "preset=smoke", cwd=work, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    table = pd.read_csv(work / target)
    frames = SMOKE["bouncing"]["frames"]
    assert list(table["method"].unique()) == CONFIG["dynamics_methods"]
    assert len(table) == frames * len(CONFIG["dynamics_methods"])
    assert sorted(table["missing_frames"].unique()) == list(range(frames))
    assert table["wrong_pixels"].between(0, 1).all()
    assert (table["seeds"] == SMOKE["train"]["seeds"]).all() and table["std"].notna().all()
    assert (work / "results" / "tables" / "dsvae_dynamics.png").stat().st_size > 0


@pytest.mark.slow
def test_gpu_paper_script_runs_its_dag_at_smoke_sizes_on_the_cpu(tmp_path: Path, mirror: Path):
    """benchmarks/gpu_paper_sprites.sh with TINY=1: the paper-scale GPU script's whole path (Sprites data,
    flow labels, judge, the calibration and plan, baseline, full and full_swap, Table 1, the summary) at the
    smoke preset's sizes, with everything it reports in OUT."""
    (tmp_path / "checkout").mkdir()
    work = copy_workflow(tmp_path / "checkout")
    (work / "benchmarks").mkdir()
    for name in ("gpu_paper_sprites.sh", "gpu_paper_sprites.py", "bench_train.py"):
        shutil.copy2(REPO / "benchmarks" / name, work / "benchmarks")
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "benchmarks/gpu_paper_sprites.sh", str(mirror)],
        cwd=work,
        env={
            **os.environ,
            "TINY": "1",
            "OUT": str(out),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    summary = (out / "summary.md").read_text()
    assert re.search(r"^epochs: \d+ \(the authors trained 300", summary, flags=re.M), summary
    for heading in ("## Calibration", "## Training in the workflow", "## Jobs", "linear probes"):
        assert heading in summary, heading
    assert "% of peak" in summary and "seq/s" in summary and "wall time:" in summary
    assert "## Calibration" in (out / "log.txt").read_text()  # everything printed is kept in OUT too
    table = pd.read_csv(work / "results" / "tables" / "table1.csv")
    assert set(table.loc[table["source"] == "seqdis", "method"]) == {"baseline", "full", "full_swap"}
    assert "published: full model" in set(table["method"])
    assert {"run.tar.gz", "calibration.json", "plan.env"} <= {p.name for p in out.iterdir()}
