from pipeline.evaluate.dsvae_study import make_dsvae_table1
from pipeline.stage import run_stage

run_stage(
    snakemake,
    make_dsvae_table1,
    models=list(snakemake.input.models),
    judge=snakemake.input.judge,
    dataset=snakemake.input.dataset,
    published=snakemake.input.published,
    output=snakemake.output.csv,
    output_md=snakemake.output.md,
)
