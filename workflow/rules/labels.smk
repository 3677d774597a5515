rule label_flow:
    """Optical flow between consecutive frames -> the top-k of a G x G grid of cells per frame."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        "results/labels/{dataset}/flow.h5",
    log:
        "logs/label_flow/{dataset}.log",
    benchmark:
        "benchmarks/label_flow/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=0 if config["flow"]["backend"] == "dis" else 1,
    params:
        flow=config["flow"],
        device=config["device"],
    script:
        "../scripts/label_flow.py"
