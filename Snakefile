# seqdis: raw video -> datasets -> self-supervision labels -> sequential VAEs -> judge -> paper tables.
#
# results/
#   data/{dataset}.h5                   clips and factor labels (layout: pipeline/data/h5io.py, README)
#   labels/{dataset}/flow.h5            optical-flow pseudo labels (S3VAE section 4.2)
#   labels/{dataset}/landmarks.h5       faces: eyelid and lip distances per frame (S3VAE section 4.2)
#   judges/{dataset}/judge.pt           classifier trained on real clips; accuracy.csv beside it
#   models/{dataset}/{method}/model.pt  one trained variant; run/ holds checkpoint, metrics.csv, tensorboard
#   metrics/{dataset}/{method}.csv      its Table 1 metrics
#   figures/{dataset}/{method}_*.png    swap grid and fixed-latent generations (+ z grid, z trace: unordered)
#   figures/{dataset}/landmarks.png     faces: the landmark labels on one test clip
#   run_config.yaml                     the --config of the last run that started jobs, and its resolved config
#   tables/{table}.csv, {table}.md      table1 (Sprites, SMMNIST, MUG), table2 (MUG) and dsprites, published
#                                       rows beside ours
#   labels/{dataset}/silence.h5         speech: per-frame silence pseudo labels
#   models/{dataset}/{method}/z{dim}/   speech: one audio model with dim-sized latents
#   metrics/{dataset}/{method}/z{dim}_verification.csv   its speaker-verification EERs
#   figures/{dataset}/{method}/z{dim}_conversion.png (+ _conversion/*.wav)   voice conversion
#   tables/table3.csv, table3.md        speaker verification (S3VAE Table 3), published rows beside ours
#   tables/dsvae_table1.csv             DSVAE's Sprites table (its Table 1)
#   tables/dsvae_dynamics.csv, .png     DSVAE section 4.3 on results/data/bouncing.h5 (its Fig. 8)
# resources/{source}/                   downloaded (or mirrored) raw files, checked by sha256
from snakemake.logging import logger
from snakemake.utils import min_version

from pipeline.config import check_profile, resolve
from pipeline.plan import watch_plan

min_version("9.20")


configfile: "config.yaml"


# The preset and any --config/--configfile keys are merged and the result validated before any rule runs.
_resolved = resolve(
    config, workflow.config_settings.overwrite_config, source="config.yaml + --config"
)
config.clear()
config.update(_resolved)
# Once the DAG is built (dry runs too): a paper-scale plan on a CPU is told its cost; each real run's
# --config is kept in results/run_config.yaml for the report's missing-file hint (pipeline/plan.py).
watch_plan(workflow, config, workflow.config_settings.overwrite_config)
# A profile's YOUR_PARTITION / YOUR_ACCOUNT placeholders stop a real run here; a dry run warns.
_unfilled = check_profile(
    workflow.resource_settings, dryrun=workflow.output_settings.dryrun
)
if _unfilled:
    logger.warning(f"WARNING: {_unfilled} (a real run stops here)")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        default_tables,
        figures_of_all_models,
