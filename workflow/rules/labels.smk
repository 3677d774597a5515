rule label_flow:
    """Optical flow between consecutive frames -> the top-k of a G x G grid of cells per frame, and each moving
    cell's flow direction in 8 bins on a coarser grid (the authors' labels)."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        output="results/labels/{dataset}/flow.h5",
    log:
        "logs/label_flow/{dataset}.log",
    benchmark:
        "benchmarks/label_flow/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"], config["flow"]["backend"] != "dis"),
    params:
        backend=config["flow"]["backend"],
        grid=config["flow"]["grid"],
        topk=config["flow"]["topk"],
        direction_grid=config["flow"]["direction_grid"],
        moving_threshold=config["flow"]["moving_threshold"],
        batch_size=config["flow"]["batch_size"],
        raft_weights=config["flow"]["raft_weights"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule label_silence:
    """Silence pseudo labels (S3VAE section 4.2): a frame is silent when its RMS level is below silence_db."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        output="results/labels/{dataset}/silence.h5",
    log:
        "logs/label_silence/{dataset}.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        threshold_db=config["audio"]["silence_db"],
    script:
        "../scripts/stage.py"


rule label_landmarks:
    """Face landmarks per frame (S3VAE section 4.2): eyelid and inner-lip gaps over the inter-ocular distance."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        output="results/labels/{dataset}/landmarks.h5",
    log:
        "logs/label_landmarks/{dataset}.log",
    benchmark:
        "benchmarks/label_landmarks/{dataset}.tsv"
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=requested_gpus(
            config["device"], config["landmarks"]["backend"] == "face_alignment"
        ),
    params:
        backend=config["landmarks"]["backend"],
        fan_weights=config["landmarks"]["fan_weights"],
        device=config["device"],
    script:
        "../scripts/stage.py"
