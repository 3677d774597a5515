rule train_judge:
    """Train the judge (models/judge.py: its family per dataset, judge.datasets) on real training clips."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        output="results/judges/{dataset}/judge.pt",
        accuracy=report(
            "results/judges/{dataset}/accuracy.csv",
            category="Judges",
            caption="../report/judge.rst",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/train_judge/{dataset}.log",
    benchmark:
        "benchmarks/train_judge/{dataset}.tsv"
    # The longest job of a preset run (SMMNIST's judge reads 20000 clips): started first, it ends with the rest.
    priority: 10
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        judge=judge_of_dataset,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule train_model:
    """Train one variant of any family (a table row) with one training seed; resumes from run/checkpoint.pt."""
    input:
        unpack(training_inputs),
    output:
        output="results/models/{dataset}/{method}/seed{training_seed}/model.pt",
    log:
        "logs/train_model/{dataset}_{method}_seed{training_seed}.log",
    benchmark:
        "benchmarks/train_model/{dataset}_{method}_seed{training_seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        gpu=requested_gpus(config["device"]),
    params:
        variant=variant_of_row,
        architecture=config["model"],
        train=config["train"],
        test_sequences=config["evaluate"]["max_sequences"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"


rule train_audio_model:
    """Train one audio model (S3VAE with silence DFP, or FHVAE) with dim-sized latents; resumable."""
    input:
        dataset="results/data/{dataset}.h5",
        labels="results/labels/{dataset}/silence.h5",
    output:
        output="results/models/{dataset}/{method}/z{dim}/model.pt",
    log:
        "logs/train_audio_model/{dataset}_{method}_z{dim}.log",
    benchmark:
        "benchmarks/train_audio_model/{dataset}_{method}_z{dim}.tsv"
    wildcard_constraints:
        dim="[0-9]+",
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        gpu=requested_gpus(config["device"]),
    params:
        variant=audio_variant_of_row,
        architecture=config["audio"]["model"],
        train=config["audio"]["train"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/stage.py"
