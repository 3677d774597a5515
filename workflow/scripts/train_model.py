from pipeline.stage import run_stage
from pipeline.train.stages import train_model

run_stage(
    snakemake,
    train_model,
    dataset=snakemake.input.dataset,
    labels=snakemake.input.get("labels"),
    output=snakemake.output[0],
    config=snakemake.config,
    method=snakemake.wildcards.method,
    seed=int(snakemake.wildcards.seed),
)
