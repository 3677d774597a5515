from pipeline.labels.silence import label_silence
from pipeline.stage import run_stage

run_stage(snakemake, label_silence, dataset=snakemake.input.dataset, output=snakemake.output[0])
