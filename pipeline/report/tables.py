"""Stages `make_table` and `make_table3`: our rows beside the published ones, as tidy CSV and Markdown.

Which datasets a results table holds is config (`table_datasets`: `table1` the paper's Sprites, SMMNIST and
MUG, `table2` its ablation on MUG, `dsprites` moving dSprites, which has no published numbers), and so are
its rows (`table_methods`, else `methods`); each dataset's title and generation directions come from its file
(`pipeline.data.h5io.read_protocol`). `table3` is speaker verification.
Torch-free: a table is built with pandas and h5py alone.
"""

from __future__ import annotations

import html
import logging

import markdown
import pandas as pd

from pipeline.data.h5io import Protocol, read_attrs, read_protocol
from pipeline.evaluate.columns import HEADLINE, TABLE_COLUMNS, VERIFICATION_COLUMNS
from pipeline.files import atomic_path, read_csv

logger = logging.getLogger(__name__)


def _cell(value: float, std: float) -> str:
    return f"{value:.4f}" if pd.isna(std) else f"{value:.4f} ± {std:.4f}"


def _grid(metrics: list[str], rows: list[tuple[str, dict[str, str]]], first: str = "method") -> list[str]:
    header = [m.replace("|", "\\|") for m in metrics]  # H(y|x) would split a Markdown cell
    lines = [f"| {first} | " + " | ".join(header) + " |", "|" + "---|" * (len(metrics) + 1)]
    lines += [f"| {label} | " + " | ".join(cells.get(m, "") for m in metrics) + " |" for label, cells in rows]
    return lines + [""]


def _direction_note(directions: tuple[str, ...]) -> str:
    if len(directions) == 1:
        return f"each metric is of the {directions[0]} direction only (pipeline/evaluate/table1.py)."
    return (
        "each metric averages the " + " and ".join(directions) + " directions (pipeline/evaluate/table1.py)."
    )


def over_seeds(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and sample std (ddof 1; NaN for one seed) over training seeds of every `keys` group's `value`;
    `std_repeats` is the mean of the per-seed std over prior samples, where the rows have one."""
    grouped = per_seed.groupby(keys, sort=False, dropna=False)  # a diagnostic without a latent has NaN there
    table = grouped["value"].agg(value="mean", std="std", seeds="count").reset_index()
    if "std" in per_seed:
        table["std_repeats"] = grouped["std"].mean().to_numpy()
    if "n" in per_seed:
        table["n"] = grouped["n"].first().to_numpy()
    return table


def judge_verdicts(judges: pd.DataFrame, bars: dict[str, float]) -> dict[str, str]:
    """{dataset: why its column is withheld} for each dataset whose judge has a head below its bar."""
    withheld = {}
    for dataset, heads in judges.groupby("dataset", sort=False):
        bar = bars.get(dataset, 0.0)
        weak = heads[heads["accuracy"] < bar]
        if len(weak):
            named = ", ".join(f"{r.head} {r.accuracy:.4f}" for r in weak.itertuples())
            withheld[dataset] = (
                f"the {dataset} judge is below its bar of {bar:.2f} on real test clips ({named}): its scores "
                f"of generated clips would mean nothing. Train it better (config judge, "
                f"results/judges/{dataset}/accuracy.csv) or lower judge.min_accuracy.{dataset}"
            )
    return withheld


def supported_claims(ours: pd.DataFrame, metric: str = "Acc") -> list[str]:
    """Pairs of rows whose `metric` differs by more than both rows' seed stds (the only claims we make)."""
    rows = ours[ours["metric"] == metric].sort_values("value", ascending=False)
    claims = []
    for i, a in enumerate(rows.itertuples()):
        for b in list(rows.itertuples())[i + 1 :]:
            if pd.notna(a.std) and pd.notna(b.std) and a.value - b.value > max(a.std, b.std):
                claims.append(f"{a.method} > {b.method} ({a.value:.4f} vs {b.value:.4f})")
    return claims


def diagnostics_lines(diagnostics: pd.DataFrame) -> list[str]:
    """The ceiling and swap accuracies, the probe matrix and the final loss terms, mean over seeds."""
    if diagnostics.empty:
        return []
    table = over_seeds(diagnostics, ["method", "diagnostic", "factor", "latent"])
    lines = []
    for diagnostic, title in (
        ("ceiling", "judge on reconstructions (both posterior means kept): the ceiling of every Acc"),
        ("swap", "judge on swaps (z_f of A, z_1:T of B): static heads against A, dynamic heads against B"),
    ):
        part = table[table["diagnostic"] == diagnostic]
        factors = list(dict.fromkeys(part["factor"]))
        rows = [
            (method, {r.factor: _cell(r.value, r.std) for r in group.itertuples()})
            for method, group in part.groupby("method", sort=False)
        ]
        lines += [f"#### {title}", ""] + _grid(factors, rows)
    probes = table[table["diagnostic"] == "probe"].assign(column=lambda t: t["factor"] + " @ " + t["latent"])
    rows = [
        (method, {r.column: f"{r.value:.2f}" for r in group.itertuples()})
        for method, group in probes.groupby("method", sort=False)
    ]
    lines += ["#### linear probes of the posterior means (factor @ latent)", ""]
    lines += _grid(list(dict.fromkeys(probes["column"])), rows)
    loss = table[table["diagnostic"] == "loss"]
    rows = [
        (method, {r.factor: f"{r.value:.4g}" for r in group.itertuples()})
        for method, group in loss.groupby("method", sort=False)
    ]
    lines += ["#### loss terms per clip, last training epoch", ""] + _grid(
        list(dict.fromkeys(loss["factor"])), rows
    )
    return lines


def markdown_table(
    protocols: dict[str, Protocol],
    ours: pd.DataFrame,
    published: pd.DataFrame,
    judges: pd.DataFrame,
    diagnostics: pd.DataFrame,
    withheld: dict[str, str],
    bars: dict[str, float],
    left_out: dict[str, str] | None = None,
) -> str:
    titles = {dataset: f"{protocol.title} ({dataset})" for dataset, protocol in protocols.items()}
    heading = " and ".join(protocol.title for protocol in protocols.values())
    lines = [f"# {heading}: generation scored by the judge", ""]
    for dataset, reason in withheld.items():
        lines += [f"## {titles[dataset]}: withheld", "", f"Not printed: {reason}.", ""]
    for dataset, reason in (left_out or {}).items():
        lines += [f"## {dataset}: left out", "", f"Not built: {reason}.", ""]
    for dataset, rows in ours.groupby("dataset", sort=False):
        mine = [
            (f"ours: {method}", {r.metric: _cell(r.value, r.std) for r in part.itertuples()})
            for method, part in rows.groupby("method", sort=False)
        ]
        theirs = [
            (f"published: {method}", {r.metric: f"{r.value:.4f}" for r in part.itertuples()})
            for method, part in published[published["dataset"] == dataset].groupby("method", sort=False)
        ]
        by_direction = [m for m in dict.fromkeys(rows["metric"]) if m not in HEADLINE]
        n, seeds = int(rows["n"].iloc[0]), int(rows["seeds"].min())
        claims = supported_claims(rows)
        lines += [f"## {titles[dataset]}", ""] + _grid(list(HEADLINE), mine + theirs)
        lines += [
            f"Ours: mean ± sample std over {seeds} training seeds (each the mean over the repeats with fresh "
            f"prior samples), {n} test clips; {_direction_note(protocols[dataset].directions)}",
            "Published: labelled rows with their source in the CSV's source column." if theirs else "",
            "Acc differences larger than both rows' seed std: "
            + ("; ".join(claims) if claims else "none")
            + ".",
            "",
            f"### {titles[dataset]}, by direction",
            "",
        ] + _grid(by_direction, mine)
        part = diagnostics[diagnostics["dataset"] == dataset] if len(diagnostics) else diagnostics
        if len(part):
            lines += [
                f"### {titles[dataset]}, diagnostics (pipeline/evaluate/diagnostics.py)",
                "",
            ] + diagnostics_lines(part)
    lines += [
        "## Judge test accuracy (real clips)",
        "",
        "| dataset | head | accuracy | bar | n |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.dataset} | {r.head} | {r.accuracy:.4f} | {bars.get(r.dataset, 0.0):.2f} | {r.n} |"
        for r in judges.itertuples()
    ]
    return "\n".join(lines) + "\n"


_HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.2em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }} th {{ background: #eee; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
{body}
</body></html>
"""


def write_markdown(text: str, output_md: str, output_html: str | None = None) -> None:
    """A table's Markdown, and (with `output_html`) the same rendered as a page, which the Snakemake report
    shows as tables rather than as text."""
    with atomic_path(output_md) as tmp:
        tmp.write_text(text)
    if output_html is None:
        return
    title = text.splitlines()[0].lstrip("# ") if text else "table"
    page = _HTML_PAGE.format(title=html.escape(title), body=markdown.markdown(text, extensions=["tables"]))
    with atomic_path(output_html) as tmp:
        tmp.write_text(page)


# The columns the tables read from each per-model CSV, filled on every row (else the file names itself as
# damaged: pipeline/files.py)
FILLED_METRICS = ["dataset", "method", "metric", "value"]
FILLED_JUDGES = ["dataset", "head", "accuracy", "n"]
FILLED_DIAGNOSTICS = ["dataset", "method", "diagnostic", "factor", "value"]
FILLED_VERIFICATION = ["dataset", "model", "feature", "dim", "eer"]


def _concat(paths: list[str], columns: list[str]) -> pd.DataFrame:
    tables = [read_csv(path, columns=columns) for path in paths]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def table_protocols(datasets: list[str]) -> dict[str, Protocol]:
    """{dataset name: its protocol} of the dataset files `datasets`, in their order."""
    return {str(read_attrs(path)["name"]): read_protocol(path) for path in datasets}


def make_table(
    *,
    datasets: list[str],
    metrics: list[str],
    judges: list[str],
    published: str,
    output_csv: str,
    output_md: str,
    output_html: str | None = None,
    diagnostics: list[str] = (),
    judge_bars: dict[str, float] | None = None,
    left_out: dict[str, str] | None = None,
) -> None:
    """Our rows (mean and std over training seeds of the per-seed metric files) beside the published ones;
    a dataset whose judge is below its bar (`judge_bars`, per dataset) is withheld, with the reason. The
    dataset files `datasets` give each dataset's title and directions; `left_out` ({dataset: why}) names
    the table's datasets that were not built (a licensed one without its copy), for the Markdown."""
    protocols = table_protocols(datasets)
    bars = dict(judge_bars or {})
    judge_table = _concat(judges, FILLED_JUDGES)
    per_seed = _concat(metrics, FILLED_METRICS)
    unknown = sorted((set(per_seed["dataset"]) | set(judge_table["dataset"])) - set(protocols))
    if unknown:
        raise ValueError(
            f"rows of datasets {unknown} but none of the dataset files {list(datasets)} is theirs: pass "
            "each table dataset's results/data/{dataset}.h5 in `datasets` (rule make_table reads them from "
            "config table_datasets)"
        )
    withheld = judge_verdicts(judge_table, bars)
    for dataset, reason in withheld.items():
        logger.warning("withholding %s: %s", dataset, reason)
    per_seed = per_seed[~per_seed["dataset"].isin(withheld)]
    ours = over_seeds(per_seed, ["dataset", "method", "metric"]).assign(source="seqdis")
    reference = pd.read_csv(published)
    reference = reference[reference["dataset"].isin(ours["dataset"].unique())]
    labelled = reference.assign(method="published: " + reference["method"], std=float("nan"), n=pd.NA)
    rows = pd.concat([ours, labelled], ignore_index=True).reindex(columns=TABLE_COLUMNS)
    with atomic_path(output_csv) as tmp:
        rows.to_csv(tmp, index=False)
    diagnostic_rows = _concat(list(diagnostics), FILLED_DIAGNOSTICS)
    if len(diagnostic_rows):
        diagnostic_rows = diagnostic_rows[~diagnostic_rows["dataset"].isin(withheld)]
    text = markdown_table(protocols, ours, reference, judge_table, diagnostic_rows, withheld, bars, left_out)
    write_markdown(text, output_md, output_html)


def markdown_table3(table: pd.DataFrame) -> str:
    lines = ["# Table 3 (S3VAE) / Table 2 (DSVAE): speaker verification EER (lower: more speaker)", ""]
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += [
            f"## {dataset}",
            "",
            "| model | feature | dim | EER (%) | source |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.model} | {r.feature} | {r.dim} | {100 * r.eer:.2f} | {r.source} |"
            for r in rows.itertuples()
        ]
        notes = rows.loc[rows["source"] == "seqdis", "note"].dropna().unique()
        lines += [""] + [f"Ours: {note}." for note in notes] + [""]
    return "\n".join(lines) + "\n"


def make_table3(
    *,
    verification: list[str],
    published: str,
    output_csv: str,
    output_md: str,
    output_html: str | None = None,
) -> None:
    """Concatenate per-model verification files; add the published rows labelled `published: `."""
    ours = _concat(verification, FILLED_VERIFICATION)
    ours["source"] = "seqdis"
    reference = pd.read_csv(published, comment="#")
    reference = reference.assign(model="published: " + reference["model"])
    table = pd.concat([ours, reference], ignore_index=True)[VERIFICATION_COLUMNS + ["source"]]
    with atomic_path(output_csv) as tmp:
        table.to_csv(tmp, index=False)
    write_markdown(markdown_table3(table), output_md, output_html)


def markdown_dsvae_table1(table: pd.DataFrame) -> str:
    """DSVAE Table 1 (rows of dsvae_study.TABLE1_COLUMNS) as one attribute-by-metric grid per method."""
    metrics = list(dict.fromkeys(table["metric"]))
    ours = table[table["source"] == "seqdis"]
    n = int(ours["n"].iloc[0]) if len(ours) else 0
    lines = ["# DSVAE Table 1: judge on data against judge on generated clips", ""]
    for method, rows in table.groupby("method", sort=False):
        lines += [f"## {method}", ""]
        grid = [
            (
                f"{attribute} ({group['kind'].iloc[0]})",
                {r.metric: _cell(r.value, r.std) for r in group.itertuples()},
            )
            for attribute, group in rows.groupby("attribute", sort=False)
        ]
        lines += _grid(metrics, grid, first="attribute")
    seeds = int(ours["seeds"].min()) if len(ours) else 0
    lines.append(
        f"Ours: mean ± sample std over {seeds} training seeds (each the mean over the repeats), {n} test "
        "clips. A static attribute's recon keeps f and draws z_1:T from the prior; the dynamic one keeps "
        "z_1:T and draws f. Definitions: pipeline/evaluate/dsvae_study.py. "
        "Published: DSVAE's Table 1 (factorised "
        "q), its source in the CSV's source column."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(make_table, make_table3)
