rule download_source:
    """Fetch one source's files (from `mirror` when set), verify every sha256, list them in SHA256SUMS.

    The mirror is read from config, not params: where the same bytes come from is no reason to rerun.
    """
    output:
        "resources/{source}/SHA256SUMS",
    log:
        "logs/download_source/{source}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    threads: 1
    script:
        "../scripts/download_source.py"


rule build_sprites:
    """Composite the LPC sheets into Sprites (DSVAE recipe): 9 actions x 1296 characters, seed-423 split."""
    input:
        "resources/lpc-sprites/SHA256SUMS",
    output:
        output="results/data/sprites.h5",
    log:
        "logs/build_sprites/sprites.log",
    benchmark:
        "benchmarks/build_sprites/sprites.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        sheets_dir=lambda wildcards, input: input[0].rsplit("/", 1)[0],
        train_characters=config["sprites"]["train_characters"],
        test_characters=config["sprites"]["test_characters"],
    script:
        "../scripts/stage.py"


rule build_smmnist:
    """Stochastic Moving MNIST (Denton & Fergus 2018): two bouncing digits, a new random velocity per bounce."""
    input:
        "resources/mnist/SHA256SUMS",
    output:
        output="results/data/smmnist.h5",
    log:
        "logs/build_smmnist/smmnist.log",
    benchmark:
        "benchmarks/build_smmnist/smmnist.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        mnist_dir=lambda wildcards, input: input[0].rsplit("/", 1)[0],
        train_sequences=config["smmnist"]["train_sequences"],
        test_sequences=config["smmnist"]["test_sequences"],
        judge_train_sequences=config["smmnist"]["judge_train_sequences"],
        frames=config["smmnist"]["frames"],
        seed=config["seed"],
    script:
        "../scripts/stage.py"


rule build_dsprites:
    """Generate moving dSprites from the seed (no download): shape, colour, scale static; motion, rotation dynamic."""
    output:
        output="results/data/dsprites.h5",
    log:
        "logs/build_dsprites/dsprites.log",
    benchmark:
        "benchmarks/build_dsprites/dsprites.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        # both splits are held in memory: 1.15 GB of frames at paper scale
        mem_mb=3000,
    params:
        train_sequences=config["dsprites"]["train_sequences"],
        test_sequences=config["dsprites"]["test_sequences"],
        judge_train_sequences=config["dsprites"]["judge_train_sequences"],
        frames=config["dsprites"]["frames"],
        image_size=config["dsprites"]["image_size"],
        seed=config["seed"],
    script:
        "../scripts/stage.py"


rule build_grid:
    """GRID talking faces: one face box per video, 64 x 64 crops, clips of 15 frames, speaker identity static."""
    input:
        grid_source,
    output:
        output="results/data/grid.h5",
    log:
        "logs/build_grid/grid.log",
    benchmark:
        "benchmarks/build_grid/grid.tsv"
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        videos_dir="resources/grid-samples",
        root=config["grid"]["root"],
        clip_frames=config["grid"]["frames"],
        hop=config["grid"]["hop"],
        image_size=config["grid"]["image_size"],
        test_fraction=config["grid"]["test_fraction"],
        margin=config["faces"]["margin"],
    script:
        "../scripts/stage.py"


rule build_mug:
    """MUG facial expressions (licensed: mug.root): a face box per video, 64 x 64 crops, one random clip each."""
    output:
        output="results/data/mug.h5",
    log:
        "logs/build_mug/mug.log",
    benchmark:
        "benchmarks/build_mug/mug.tsv"
    conda:
        "../../envs/faces.yaml"
    threads: 1
    resources:
        # every clip is held in memory: 0.65 GB of frames for the database's 3528 videos
        mem_mb=4000,
    params:
        root=config["mug"]["root"],
        clip_frames=config["mug"]["frames"],
        image_size=config["mug"]["image_size"],
        train_fraction=config["mug"]["train_fraction"],
        margin=config["faces"]["margin"],
        seed=config["seed"],
    script:
        "../scripts/stage.py"


rule build_bouncing:
    """Simulate the bouncing-ball dataset of DSVAE section 4.3 (pymunk, elastic walls of a fixed polygon)."""
    output:
        output="results/data/bouncing.h5",
    log:
        "logs/build_bouncing/bouncing.log",
    benchmark:
        "benchmarks/build_bouncing/bouncing.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        train_sequences=config["bouncing"]["train_sequences"],
        test_sequences=config["bouncing"]["test_sequences"],
        frames=config["bouncing"]["frames"],
        image_size=config["bouncing"]["image_size"],
        shape=config["bouncing"]["shape"],
        seed=config["seed"],
    script:
        "../scripts/stage.py"


rule build_audio:
    """Speech corpus -> standardised feature segments (T = 20 frames of 10 ms) and per-frame RMS levels."""
    input:
        audio_source,
    output:
        output="results/data/{dataset}.h5",
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
        "../scripts/stage.py"
