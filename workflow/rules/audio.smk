rule build_audio:
    """Speech corpus -> standardised feature segments (T = 20 frames of 10 ms) and per-frame RMS levels."""
    input:
        audio_source,
    output:
        "results/data/{dataset}.h5",
    log:
        "logs/build_audio/{dataset}.log",
    benchmark:
        "benchmarks/build_audio/{dataset}.tsv"
    wildcard_constraints:
        dataset="fsdd|timit",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        root=audio_root,
        features=config["audio"]["features"],
    script:
        "../scripts/build_audio.py"


rule label_silence:
    """Silence pseudo labels (S3VAE section 4.2): a frame is silent when its RMS level is below silence_db."""
    input:
        dataset="results/data/{dataset}.h5",
    output:
        "results/labels/{dataset}/silence.h5",
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
        "../scripts/label_silence.py"


rule train_audio_model:
    """Train one audio model (S3VAE with silence DFP, or FHVAE) with dim-sized latents; resumable."""
    input:
        dataset="results/data/{dataset}.h5",
        labels="results/labels/{dataset}/silence.h5",
    output:
        "results/models/{dataset}/{method}/z{dim}/model.pt",
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
        gpu=1,
    params:
        spec=audio_model_spec,
        model=config["audio"]["model"],
        train=config["audio"]["train"],
    script:
        "../scripts/train_audio_model.py"


rule evaluate_verification:
    """Speaker verification EER of the z_f and z_1:T utterance embeddings over all test-utterance pairs."""
    input:
        model="results/models/{dataset}/{method}/z{dim}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        "results/metrics/{dataset}/{method}/z{dim}_verification.csv",
    log:
        "logs/evaluate_verification/{dataset}_{method}_z{dim}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/evaluate_verification.py"


rule convert_voices:
    """Voice conversion (DSVAE Fig. 6): swap z_f between two speakers; spectrograms and Griffin-Lim WAVs."""
    input:
        model="results/models/{dataset}/{method}/z{dim}/model.pt",
        dataset="results/data/{dataset}.h5",
    output:
        figure=report(
            "results/figures/{dataset}/{method}/z{dim}_conversion.png",
            category="Figures",
        ),
        wavs=directory("results/figures/{dataset}/{method}/z{dim}_conversion"),
    log:
        "logs/convert_voices/{dataset}_{method}_z{dim}.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/convert_voices.py"


rule make_table3:
    """Table 3 (S3VAE) / Table 2 (DSVAE): every audio model's EERs beside the published rows.

    The voice-conversion figures are inputs so that one target builds every audio result.
    """
    input:
        verification=verification_of_all_audio_models,
        conversions=conversions_of_all_audio_models,
        published="workflow/published/table3.csv",
    output:
        csv=report("results/tables/table3.csv", category="Tables"),
        md="results/tables/table3.md",
    log:
        "logs/make_table3/table3.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    script:
        "../scripts/make_table3.py"
