from pipeline.evaluate.diagnostics import diagnose_model
from pipeline.stage import run_stage

run_stage(
    snakemake,
    diagnose_model,
    model=snakemake.input.model,
    judge=snakemake.input.judge,
    dataset=snakemake.input.dataset,
    output_csv=snakemake.output.csv,
    output_png=snakemake.output.png,
    method=snakemake.wildcards.method,
    training_seed=int(snakemake.wildcards.seed),
)
