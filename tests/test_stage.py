"""Every stage module runs from the shell (`python -m pipeline.<module>`), and a failing stage prints its
error line once while its log file keeps the traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline import stage as stage_module
from pipeline.config import FromConfig
from pipeline.data import h5io
from pipeline.stage import run_stage, stage_main

REPO = Path(__file__).resolve().parents[1]

# module -> its stages (sub-commands when there are several); README § Every stage from the shell.
STAGE_MODULES = {
    "pipeline.data.download": ["fetch_source"],
    "pipeline.data.sprites": ["build_sprites"],
    "pipeline.data.smmnist": ["build_smmnist"],
    "pipeline.data.dsprites": ["build_dsprites"],
    "pipeline.data.bouncing": ["build_bouncing"],
    "pipeline.data.mug": ["build_mug"],
    "pipeline.data.audio": ["build_audio"],
    "pipeline.labels.flow": ["label_flow"],
    "pipeline.labels.silence": ["label_silence"],
    "pipeline.labels.landmarks": ["label_landmarks"],
    "pipeline.train.model": ["train_model"],
    "pipeline.train.audio": ["train_audio_model"],
    "pipeline.train.judge": ["train_judge"],
    "pipeline.evaluate.table1": ["evaluate_model"],
    "pipeline.report.figures": ["plot_figures", "plot_latent_space"],
    "pipeline.report.tables": ["make_table", "make_table3"],
    "pipeline.evaluate.verification": ["evaluate_verification"],
    "pipeline.report.conversion": ["convert_voices"],
    "pipeline.report.landmarks": ["plot_landmarks"],
    "pipeline.evaluate.dsvae_study": ["make_dsvae_table1", "evaluate_dynamics"],
}

# Runs each module as `python -m` does, with --help (and STAGE --help), in one interpreter: torch is
# imported once instead of once per module.
_HELP_SCRIPT = """
import contextlib, io, json, runpy, sys, warnings
warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before it ran as __main__
results = {}
for module, stages in json.loads(sys.argv[1]).items():
    calls = [[]] if len(stages) == 1 else [[]] + [[stage] for stage in stages]
    for call in calls:
        out = io.StringIO()
        sys.argv = [module, *call, "--help"]
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = "no exit"
            except SystemExit as exit:
                code = exit.code
        results[" ".join([module, *call])] = [code, out.getvalue()]
print(json.dumps(results))
"""


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_every_stage_module_has_a_help():
    result = python("-c", _HELP_SCRIPT, json.dumps(STAGE_MODULES), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    helps = json.loads(result.stdout.splitlines()[-1])
    for module, stages in STAGE_MODULES.items():
        code, text = helps[module]
        assert code == 0, f"python -m {module} --help exited with {code}"
        assert text.startswith("usage: "), text
        for stage in stages if len(stages) > 1 else []:
            assert stage in text, f"python -m {module} --help does not list {stage}"
            stage_code, stage_text = helps[f"{module} {stage}"]
            assert stage_code == 0 and f"usage: python -m {module} {stage}" in stage_text, stage_text


def test_a_module_of_several_stages_without_one_says_so():
    result = python("-m", "pipeline.report.tables", cwd=REPO)
    assert result.returncode == 2
    assert "required: {make_table,make_table3}" in result.stderr


def test_a_stage_runs_from_the_shell(tmp_path: Path):
    data = tmp_path / "dsprites.h5"
    args = ["--output", str(data), "--train-sequences", "4", "--test-sequences", "2", "--frames", "3"]
    result = python("-m", "pipeline.data.dsprites", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(h5io.read_split(data, "train")) == 4 and len(h5io.read_split(data, "test")) == 2


def test_a_stage_with_list_arguments_runs_from_the_shell(tmp_path: Path):
    """`make_table` takes several metric files and judge files: list arguments take several values."""
    metrics = []
    for method in ("full", "dsvae"):
        path = tmp_path / f"{method}.csv"
        rows = [("dsprites", method, metric, 0.5, 0.1, 30) for metric in ("Acc", "IS", "H(y|x)", "H(y)")]
        pd.DataFrame(rows, columns=["dataset", "method", "metric", "value", "std", "n"]).to_csv(
            path, index=False
        )
        metrics.append(str(path))
    data = tmp_path / "dsprites.h5"  # the dataset file: the table reads its title and directions there
    built = python("-m", "pipeline.data.dsprites", "--output", str(data), "--train-sequences", "2",
                   "--test-sequences", "2", "--frames", "2", cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    judges = tmp_path / "accuracy.csv"
    pd.DataFrame({"dataset": ["dsprites"], "head": ["motion"], "accuracy": [0.9], "n": [30]}).to_csv(judges)
    out = tmp_path / "tables" / "dsprites.csv"
    result = python(
        "-m", "pipeline.report.tables", "make_table", "--datasets", str(data), "--metrics", *metrics,
        "--judges", str(judges), "--published", str(REPO / "workflow/published/dsprites.csv"),
        "--output-csv", str(out), "--output-md", str(out.with_suffix(".md")),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(pd.read_csv(out)["method"].unique()) == ["dsvae", "full"]


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def configured(
    *,
    output: str,
    epochs: int = FromConfig("train.epochs"),
    model: dict = FromConfig("model"),
    judge_epochs: int = FromConfig("judge.epochs"),
    sizes: list[int] = (1,),
    dry: bool = False,
) -> None:
    """A stage that records what the command line gave it."""
    configured.seen = {"output": output, "epochs": epochs, "model": model, "judge_epochs": judge_epochs}
    configured.seen.update(sizes=sizes, dry=dry)


def test_config_arguments_are_merged_and_validated_as_in_the_snakefile(restore_logging):
    argv = ["--output", "x", "--configfile", str(REPO / "config.yaml"), "--preset", "smoke"]
    argv += ["--set", "train.epochs=3", "--set", "model.conv_channels=[8, 16]", "--sizes", "2", "3", "--dry"]
    stage_main(configured, argv=argv)
    seen = configured.seen
    assert seen["output"] == "x" and seen["sizes"] == [2, 3] and seen["dry"] is True
    assert seen["epochs"] == 3 and seen["model"]["conv_channels"] == [8, 16]
    assert seen["judge_epochs"] == 1  # smoke's
    stage_main(configured, argv=["--output", "x", "--preset", "smoke", "--judge-epochs", "7"])
    assert configured.seen["judge_epochs"] == 7  # an argument given on the command line wins
    with pytest.raises(SystemExit, match="train/epochs: 'ten' is not of type 'integer'"):
        stage_main(
            configured,
            argv=["--output", "x", "--configfile", str(REPO / "config.yaml"), "--set", "train.epochs=ten"],
        )


def failing(*, path: str) -> None:
    """A stage that fails the way a bad input does."""
    logging.getLogger(__name__).info("reading %s", path)
    raise ValueError(f"{path} is damaged: rebuild it")


def test_a_failure_prints_the_error_line_once_and_logs_the_traceback(tmp_path, capsys, restore_logging):
    log = tmp_path / "logs" / "rule" / "x.log"
    smk = SimpleNamespace(log=[str(log)], threads=1, rule="build_x", wildcards={}, params={}, resources={})
    with pytest.raises(SystemExit) as exit:
        run_stage(smk, failing, path="results/data/x.h5")
    message = str(exit.value.code)
    assert message.startswith("ERROR: failing failed: ValueError: results/data/x.h5 is damaged: rebuild it")
    assert str(log) in message
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "is damaged" not in stderr  # SystemExit prints the message, once
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "ERROR: failing failed: ValueError" in text and "ValueError: results/data/x.h5 is damaged" in text
    assert "reading results/data/x.h5" in text


def stopped_by_slurm(*, path: str) -> None:
    """A stage that SLURM stops: the SIGTERM it sends at a job's time limit or on scancel."""
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def restore_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (
            "TimeLimit",
            "SLURM job 77 reached its time limit (1:00): raise the rule's `runtime` (minutes) in the "
            "set-resources of your profile (train_model: {runtime: ...}; a --set-resources "
            "train_model:runtime=",
        ),
        (
            "None",
            "SLURM job 77 was stopped (scancel, preemption or its node going down; squeue reason: None): "
            "rerun the same command",
        ),
    ],
)
def test_a_job_that_slurm_stops_logs_its_rule_and_why_and_exits_as_sigterm(
    tmp_path, monkeypatch, restore_logging, restore_sigterm, reason, expected
):
    """squeue's answer is stood in for here; tests/test_slurm.py has SLURM stop real jobs."""
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(stage_module, "_squeue_reason_and_limit", lambda job_id: (reason, "1:00"))
    log = tmp_path / "train_model.log"
    wildcards = {"dataset": "dsprites", "method": "full", "training_seed": "0"}
    smk = SimpleNamespace(
        log=[str(log)], threads=1, rule="train_model", wildcards=wildcards, params={}, resources={}
    )
    with pytest.raises(SystemExit) as exit:
        run_stage(smk, stopped_by_slurm, path="x")
    assert exit.value.code == 128 + signal.SIGTERM
    text = log.read_text()
    assert f"rule train_model {wildcards}: {expected}" in text, text
    assert text.count("SLURM job 77") == 1


def test_a_rule_that_does_not_pass_a_config_argument_is_named(tmp_path, restore_logging):
    """A stage's `FromConfig` arguments are its rule's params: one the rule forgot fails with its name."""
    smk = SimpleNamespace(
        log=[], threads=1, rule="x", wildcards={}, params={"epochs": 2, "model": {}}, resources={}
    )
    with pytest.raises(SystemExit, match=r"not given judge_epochs \(config judge.epochs\)"):
        run_stage(smk, configured, output="x")
    smk.params["judge_epochs"] = 1
    run_stage(smk, configured, output="x")
    assert configured.seen["epochs"] == 2 and configured.seen["judge_epochs"] == 1


def _rule_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """{rule: {section: the names of its named entries}} of a rule file, for input, output and params."""
    rules = {}
    for block in re.split(r"(?m)^(?=rule )", text)[1:]:
        name = re.match(r"rule (\w+):", block).group(1)
        sections = {}
        for section in ("input", "output", "params", "script"):
            body = re.search(rf"(?m)^    {section}:\n((?:        .*\n|            .*\n)+)", block)
            lines = body.group(1).splitlines() if body else []
            sections[section] = [m.group(1) for line in lines if (m := re.match(r"        (\w+)=", line))]
            if section == "script":
                sections[section] = [line.strip().strip('"') for line in lines]
        rules[name] = sections
    return rules


def test_every_rule_passes_exactly_what_its_stage_reads():
    """A rule runs the stage function of its name: its named inputs, outputs and params are arguments of
    that function, and every argument the function reads from the config (FromConfig) is one of its params."""
    import inspect

    from pipeline.stage import stage_of_rule

    checked = 0
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule, sections in _rule_sections(path.read_text()).items():
            if sections["script"] != ["../scripts/stage.py"]:
                assert rule == "download_source", f"{rule} has a script of its own: {sections['script']}"
                continue
            parameters = inspect.signature(stage_of_rule(rule)).parameters
            for section in ("input", "output", "params"):
                unknown = set(sections[section]) - set(parameters)
                assert not unknown, f"rule {rule}: {section} {sorted(unknown)} are no arguments of its stage"
            from_config = {n for n, p in parameters.items() if isinstance(p.default, FromConfig)}
            assert from_config <= set(sections["params"]), f"rule {rule} does not pass {from_config}"
            checked += 1
    assert checked >= 20
