from pipeline.stage import run_stage
from pipeline.tables import make_table

run_stage(
    snakemake,
    make_table,
    table=snakemake.wildcards.table,
    metrics=list(snakemake.input.metrics),
    judges=list(snakemake.input.judges),
    published=snakemake.input.published,
    output_csv=snakemake.output.csv,
    output_md=snakemake.output.md,
)
