from pipeline.labels.flow import label_flow
from pipeline.stage import run_stage

run_stage(snakemake, label_flow, dataset=snakemake.input.dataset, output=snakemake.output[0])
