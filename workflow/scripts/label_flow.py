from pipeline.config import resolve_device
from pipeline.labels.flow import label_flow
from pipeline.stage import run_stage

flow = snakemake.params.flow
run_stage(
    snakemake,
    label_flow,
    dataset=snakemake.input.dataset,
    output=snakemake.output[0],
    backend=flow["backend"],
    grid=flow["grid"],
    topk=flow["topk"],
    device=resolve_device(snakemake.params.device),
    batch_size=flow["batch_size"],
    raft_weights=flow["raft_weights"],
)
