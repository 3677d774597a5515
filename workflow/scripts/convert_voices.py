from pipeline.report.conversion import convert_voices
from pipeline.stage import run_stage

run_stage(
    snakemake,
    convert_voices,
    model=snakemake.input.model,
    dataset=snakemake.input.dataset,
    figure=snakemake.output.figure,
    wav_dir=snakemake.output.wavs,
)
