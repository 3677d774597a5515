from pipeline.stage import run_stage
from pipeline.verification import evaluate_verification

run_stage(
    snakemake,
    evaluate_verification,
    model=snakemake.input.model,
    dataset=snakemake.input.dataset,
    output=snakemake.output[0],
    config=snakemake.config,
    method=snakemake.wildcards.method,
)
