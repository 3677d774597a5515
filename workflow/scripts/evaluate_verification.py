from pipeline.evaluate.verification import evaluate_verification
from pipeline.stage import run_stage

run_stage(
    snakemake,
    evaluate_verification,
    model=snakemake.input.model,
    dataset=snakemake.input.dataset,
    output=snakemake.output[0],
    method=snakemake.wildcards.method,
)
