from pipeline.evaluate.table1 import evaluate_model
from pipeline.stage import run_stage

run_stage(
    snakemake,
    evaluate_model,
    model=snakemake.input.model,
    judge=snakemake.input.judge,
    dataset=snakemake.input.dataset,
    output=snakemake.output[0],
    method=snakemake.wildcards.method,
    training_seed=int(snakemake.wildcards.seed),
)
