"""benchmarks/quality_curve.py end to end on the smoke preset's moving dSprites: the inputs built by the
workflow in a copy of it, then a row trained, scored after each listed epoch and diagnosed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, copy_workflow, snakemake


@pytest.mark.slow
def test_a_curve_scores_each_epoch_and_diagnoses_the_last_model(tmp_path: Path, monkeypatch, capsys):
    work = copy_workflow(tmp_path / "workflow")
    inputs = ("results/judges/dsprites/judge.pt", "results/labels/dsprites/flow.h5")
    built = snakemake("--cores", "1", *inputs, "--config", "preset=smoke", cwd=work, timeout=600)
    assert built.returncode == 0, built.stdout[-4000:]
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality_curve

    output = tmp_path / "curve"
    quality_curve.main(
        [
            *("--preset", "smoke", "--dataset", "dsprites", "--methods", "full", "--epochs", "1,2"),
            *("--threads", "1", "--diagnose", "--results", str(work / "results"), "--output", str(output)),
        ]
    )

    printed = capsys.readouterr().out
    assert "full seed 0, 2 epochs" in printed and "full seed 0, diagnostics of the last epoch" in printed
    curve = pd.read_csv(output / "quality_curve.csv")
    assert sorted(curve["epochs"].unique()) == [1, 2]
    assert set(curve["metric"]) == set(quality_curve.CURVE_METRICS)
    assert curve["value"].between(0, 1).all()
    # the model of the last epoch, in the workflow's layout (model.pt beside run/), and its diagnostics
    assert (output / "runs" / "full_seed0" / "model.pt").exists()
    assert (output / "runs" / "full_seed0" / "run" / "metrics.csv").exists()
    diagnostics = pd.read_csv(output / "full_seed0_diagnostics.csv")
    assert set(diagnostics["diagnostic"]) == {"ceiling", "swap", "probe", "loss"}
    assert set(diagnostics.loc[diagnostics["diagnostic"] == "probe", "latent"]) == {"z_f", "z_1:T"}
    assert (output / "full_seed0_probes.png").stat().st_size > 0
