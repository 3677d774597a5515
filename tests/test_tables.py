"""Table 1 from per-seed metric files: mean and std over training seeds, the claims they support, and a
column withheld when its judge cannot read real clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.report.tables import judge_verdicts, make_table, over_seeds, supported_claims

REPO_PUBLISHED = "workflow/published/table1.csv"


def per_seed_rows(dataset: str, method: str, accs: list[float]) -> pd.DataFrame:
    rows = []
    for seed, acc in enumerate(accs):
        for metric, value in (
            ("Acc", acc),
            ("IS", 2.0),
            ("H(y|x)", 0.5),
            ("H(y)", 1.0),
            ("Acc/fixed_static", acc),
        ):
            rows.append(
                {"dataset": dataset, "method": method, "seed": seed, "metric": metric} | {"value": value}
            )
    return pd.DataFrame(rows).assign(std=0.01, n=10)


def test_over_seeds_is_the_mean_and_sample_std():
    table = over_seeds(per_seed_rows("sprites", "full", [0.8, 0.9, 1.0]), ["dataset", "method", "metric"])
    acc = table[table["metric"] == "Acc"].iloc[0]
    assert acc["value"] == pytest.approx(0.9) and acc["std"] == pytest.approx(0.1)  # ddof 1
    assert acc["seeds"] == 3 and acc["std_repeats"] == pytest.approx(0.01)


def test_a_difference_is_claimed_only_beyond_both_seed_stds():
    rows = pd.DataFrame(
        [
            {"method": "full", "metric": "Acc", "value": 0.90, "std": 0.01},
            {"method": "baseline", "metric": "Acc", "value": 0.80, "std": 0.02},
            {"method": "noisy", "metric": "Acc", "value": 0.85, "std": 0.10},
        ]
    )
    assert supported_claims(rows) == ["full > baseline (0.9000 vs 0.8000)"]


def test_a_judge_below_its_bar_withholds_its_dataset():
    judges = pd.DataFrame(
        [
            {"dataset": "sprites", "head": "action", "accuracy": 1.0, "n": 10},
            {"dataset": "smmnist", "head": "digits", "accuracy": 0.52, "n": 10},
        ]
    )
    withheld = judge_verdicts(judges, {"sprites": 0.99, "smmnist": 0.9})
    assert list(withheld) == ["smmnist"]
    assert "digits 0.5200" in withheld["smmnist"] and "judge.min_accuracy.smmnist" in withheld["smmnist"]


def test_make_table_aggregates_seeds_and_withholds_a_weak_judge(tmp_path):
    metrics = []
    for dataset, method, accs in (("sprites", "full", [0.9, 0.92]), ("sprites", "baseline", [0.5, 0.6])):
        path = tmp_path / f"{dataset}_{method}.csv"
        per_seed_rows(dataset, method, accs).to_csv(path, index=False)
        metrics.append(str(path))
    smmnist = tmp_path / "smmnist_full.csv"
    per_seed_rows("smmnist", "full", [0.3, 0.4]).to_csv(smmnist, index=False)
    judges = []
    for dataset, accuracy in (("sprites", 1.0), ("smmnist", 0.52)):
        path = tmp_path / f"{dataset}_accuracy.csv"
        pd.DataFrame([{"dataset": dataset, "head": "h", "accuracy": accuracy, "n": 10}]).to_csv(
            path, index=False
        )
        judges.append(str(path))
    csv, md = tmp_path / "table1.csv", tmp_path / "table1.md"
    make_table(
        table="table1",
        metrics=metrics + [str(smmnist)],
        judges=judges,
        published=REPO_PUBLISHED,
        output_csv=str(csv),
        output_md=str(md),
        judge_bars={"sprites": 0.99, "smmnist": 0.9},
    )
    table = pd.read_csv(csv)
    assert "smmnist" not in set(table["dataset"])  # neither our rows nor the published ones
    full = table[(table["method"] == "full") & (table["metric"] == "Acc")].iloc[0]
    assert full["value"] == pytest.approx(0.91) and full["std"] == pytest.approx(np.std([0.9, 0.92], ddof=1))
    assert (table["source"] == "seqdis").sum() == 2 * 5
    assert table["method"].str.startswith("published: ").sum() == 5 * 4  # Sprites' five published rows
    text = md.read_text()
    assert "## smmnist: withheld" in text and "h 0.5200" in text
    assert "full > baseline" in text and "over 2 training seeds" in text


def test_the_diagnostics_of_a_table_keep_the_terms_without_a_latent(tmp_path):
    """Ceiling, swap and loss rows have no latent (an empty CSV cell, NaN once read): none is dropped."""
    rows = [("ceiling", "action", "", 0.9), ("swap", "action", "", 0.3), ("probe", "action", "z_f", 1.0)]
    rows += [("loss", "recon", "", -2000.0)]
    diagnostics = tmp_path / "seed0_diagnostics.csv"
    pd.DataFrame(
        [
            {"dataset": "sprites", "method": "full", "seed": seed, "diagnostic": d, "factor": f, "latent": z}
            | {"value": v + seed * 0.02, "n": 10}
            for seed in (0, 1)
            for d, f, z, v in rows
        ]
    ).to_csv(diagnostics, index=False)
    metrics, judge = tmp_path / "full.csv", tmp_path / "accuracy.csv"
    per_seed_rows("sprites", "full", [0.9, 0.92]).to_csv(metrics, index=False)
    judge_row = {"dataset": "sprites", "head": "action", "accuracy": 1.0, "n": 10}
    pd.DataFrame([judge_row]).to_csv(judge, index=False)
    md = tmp_path / "table1.md"
    make_table(
        table="table1",
        metrics=[str(metrics)],
        judges=[str(judge)],
        published=REPO_PUBLISHED,
        output_csv=str(tmp_path / "table1.csv"),
        output_md=str(md),
        diagnostics=[str(diagnostics)],
    )
    text = md.read_text().split("diagnostics (pipeline/evaluate/diagnostics.py)")[1]
    ceiling, swap, probe, loss = text.split("####")[1:5]
    assert "| full | 0.9100 ± 0.0141 |" in ceiling  # mean ± sample std over the two seeds
    assert "| full | 0.3100 ± 0.0141 |" in swap
    assert "| full | 1.01 |" in probe
    assert "| full | -2000 |" in loss
