from pipeline.report.tables import make_table
from pipeline.stage import run_stage

run_stage(
    snakemake,
    make_table,
    datasets=list(snakemake.input.datasets),
    metrics=list(snakemake.input.metrics),
    judges=list(snakemake.input.judges),
    diagnostics=list(snakemake.input.diagnostics),
    published=snakemake.input.published,
    output_csv=snakemake.output.csv,
    output_md=snakemake.output.md,
)
