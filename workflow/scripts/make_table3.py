from pipeline.report.tables import make_table3
from pipeline.stage import run_stage

run_stage(
    snakemake,
    make_table3,
    verification=list(snakemake.input.verification),
    published=snakemake.input.published,
    output_csv=snakemake.output.csv,
    output_md=snakemake.output.md,
)
