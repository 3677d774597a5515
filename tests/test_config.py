"""config.yaml, presets and overrides: merged in that order, validated against the schema."""

from __future__ import annotations

import pytest
import yaml

from pipeline import config as cfg
from pipeline.config import ROOT, ConfigError, load

PRESETS = sorted(p.stem for p in cfg.PRESETS.glob("*.yaml")) + ["paper"]


def test_presets_are_found():
    assert {"smoke", "quick", "paper"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates(preset: str):
    config = load(overrides={"preset": preset})
    assert config["preset"] == preset
    assert set(config["methods"]) <= set(config["variants"])


def test_paper_is_config_yaml_itself():
    config = load()
    assert config["preset"] == "paper"
    # the authors' optimiser (ODE-RL 0d4c701 train_DS_VAE_sprite.py:21, 23, 29)
    assert (config["train"]["epochs"], config["train"]["batch_size"], config["train"]["lr"]) == (
        300,
        128,
        0.002,
    )
    s3vae = ["baseline", "full", "baseline_sv", "no_scc", "no_dfp", "no_mi"]
    assert config["methods"] == s3vae + ["dsvae", "dsvae_full", "unordered", "mocogan"]
    assert config["tables"] == ["table1", "dsprites", "dsvae_table1", "dsvae_dynamics"]


def test_preset_is_merged_over_config_yaml():
    smoke = load(overrides={"preset": "smoke"})
    assert smoke["train"]["epochs"] == 2
    assert smoke["model"]["conv_channels"] == [8, 16, 32, 64]  # lists are replaced whole
    assert smoke["train"]["lr"] == 0.002  # keys the preset leaves out keep config.yaml's value
    paper = load()["variants"]
    assert smoke["variants"]["full"] == paper["full"]  # smoke shrinks only the new families' own sizes
    assert smoke["variants"]["unordered"] == {**paper["unordered"], "pair_channels": 8}


def test_overrides_win_over_the_preset():
    config = load(overrides={"preset": "quick", "train": {"epochs": 1}})
    assert config["train"]["epochs"] == 1
    assert config["train"]["lr"] == 0.001  # the rest of quick's train section survives
    assert config["train"]["batch_size"] == 32
    quick = yaml.safe_load((ROOT / "workflow/presets/quick.yaml").read_text())
    assert config["methods"] == quick["methods"] and config["tables"] == quick["tables"]


def test_unknown_key_names_the_key_and_the_schema():
    with pytest.raises(ConfigError) as err:
        load(overrides={"train": {"epochz": 1}})
    message = str(err.value)
    assert "epochz" in message
    assert "workflow/schemas/config.schema.yaml" in message


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError, match="lerning_rate"):
        load(overrides={"lerning_rate": 0.1})


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"train": {"epochs": "ten"}}, "train/epochs"),
        ({"train": {"bf16": "yes"}}, "train/bf16"),
        ({"model": {"conv_channels": 64}}, "model/conv_channels"),
        ({"variants": {"full": {"mi_estimator": "exact"}}}, "variants/full/mi_estimator"),
        ({"device": "tpu"}, "device"),
        ({"variants": {"dsvae": {"encoder": "fully"}}}, "variants/dsvae/encoder"),
        ({"variants": {"mocogan": {"content_dim": 0}}}, "variants/mocogan/content_dim"),
        ({"variants": {"new": {"family": "gan"}}}, "variants .*new.*gan.* name no registered family"),
    ],
)
def test_wrong_type_or_value_names_the_key(override: dict, where: str):
    with pytest.raises(ConfigError, match=where):
        load(overrides=override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"seed": -1}, "seed: -1 is less than the minimum of 0"),
        ({"train": {"batch_size": 0}}, "train/batch_size: 0 is less than the minimum of 2"),
        ({"judge": {"lr": 5}}, "judge/lr: 5 is greater than the maximum of 1"),
        ({"variants": {"full": {"lr": 0}}}, "variants/full/lr: 0 is less than or equal to the minimum of 0"),
        ({"methods": ["full", "Full swap"]}, "methods/1: 'Full swap' does not match '^[a-z0-9_]+$'"),
        ({"variants": {"full-2": {}}}, "variants: 'full-2' does not match '^[a-z0-9_]+$'"),
        ({"mirror": ""}, "mirror: '' should be non-empty"),
        ({"mug": {"root": ""}}, "mug/root: '' should be non-empty"),
        ({"dsprites": {"image_size": 24}}, "dsprites/image_size: 24 is less than the minimum of 32"),
        ({"dfp_labels": {"sprite": "flow"}}, "dfp_labels: 'sprite' is not one of"),
        ({"judge": {"min_accuracy": {"timit": 0.9}}}, "judge/min_accuracy: 'timit' is not one of"),
        ({"judge": {"datasets": {"smmnist": {"family": "s3vae"}}}}, "judge/datasets/smmnist/family: 's3vae'"),
        (
            {"judge": {"datasets": {"smmnist": {"conv_channels": [8] * 7}}}},
            "judge.datasets.smmnist.conv_channels has 7 stride-2 layers",
        ),
        ({"audio": {"silence_db": 6}}, "audio/silence_db: 6 is greater than the maximum of 0"),
        ({"flow": {"grid": 5}}, "flow.grid 5 does not divide the sprites frame side 64"),
        ({"flow": {"topk": 65}}, "flow.topk 65 is more than the flow.grid**2 = 64 cells"),
        (
            {"model": {"conv_channels": [8] * 7}},
            "model.conv_channels has 7 stride-2 layers: the frame sides {'sprites': 64",
        ),
        (
            {"dsprites": {"image_size": 40}},
            "4 stride-2 layers: the frame sides {'dsprites': 40} are not divisible by 16",
        ),
        ({"train": {"max_sequences": 8}}, "train.max_sequences 8 is less than one train.batch_size of 128"),
        (
            {"preset": "smoke", "train": {"batch_size": 32}},
            "smmnist.train_sequences 24 is less than one train.batch_size of 32",
        ),
    ],
)
def test_a_value_the_first_job_would_refuse_stops_at_validation_naming_the_key(override: dict, message: str):
    with pytest.raises(ConfigError) as err:
        load(overrides=override)
    assert message in str(err.value)


def test_the_frame_sides_no_key_sets_are_the_builders():
    from pipeline.data.smmnist import MovingDigitsSpec
    from pipeline.data.sprites import CELL

    assert cfg.FIXED_FRAME_SIDES == {"sprites": CELL, "smmnist": MovingDigitsSpec().image_size}


def test_the_datasets_of_each_table_are_config():
    table1 = ["sprites", "smmnist", "mug"]
    assert load()["table_datasets"] == {"table1": table1, "table2": ["mug"], "dsprites": ["dsprites"]}
    gpu = load(overrides={"preset": "gpu"})["table_datasets"]
    assert gpu == {"table1": ["sprites"], "table2": ["mug"], "dsprites": ["dsprites"]}  # one list replaced
    override = load(overrides={"table_datasets": {"dsprites": ["dsprites", "sprites"]}})["table_datasets"]
    assert override["dsprites"] == ["dsprites", "sprites"] and override["table1"] == table1


def test_the_rows_of_a_table_are_config():
    config = load()
    assert config["table_methods"] == {"table2": ["no_scc", "no_dfp", "no_mi", "full"]}  # S3VAE Table 2
    with pytest.raises(ConfigError, match=r"table_methods.table2 \['no_kl'\] are not defined"):
        load(overrides={"table_methods": {"table2": ["full", "no_kl"]}})
    with pytest.raises(ConfigError, match="table_methods: Additional properties"):
        load(overrides={"table_methods": {"table9": ["full"]}})


def test_mug_is_config_with_no_copy_by_default():
    mug = load()["mug"]
    assert mug == {"root": None, "frames": 15, "image_size": 64, "train_fraction": 0.75}  # S3VAE 5.1
    assert load()["dfp_labels"]["mug"] == "landmarks"
    with pytest.raises(ConfigError, match="mug/train_fraction"):
        load(overrides={"mug": {"train_fraction": 1.5}})


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"table_datasets": {"table1": ["sprites", "mnist"]}}, "table_datasets/table1/1: 'mnist' is not"),
        ({"table_datasets": {"table1": ["bouncing"]}}, "table_datasets/table1/0: 'bouncing' is not"),
        ({"table_datasets": {"table4": ["sprites"]}}, "table_datasets: Additional properties"),
        ({"table_datasets": {"dsprites": []}}, "table_datasets/dsprites"),
    ],
)
def test_an_unknown_table_dataset_names_the_key_and_the_known_datasets(override: dict, where: str):
    with pytest.raises(ConfigError) as err:
        load(overrides=override)
    assert where in str(err.value) and "config.schema.yaml" in str(err.value)
    if "is not" in where:
        assert "['sprites', 'smmnist', 'dsprites', 'mug']" in str(err.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError) as err:
        load(overrides={"preset": "huge"})
    message = str(err.value)
    assert "huge" in message
    for preset in PRESETS:
        assert preset in message


def test_method_without_a_variant_is_rejected():
    with pytest.raises(ConfigError, match="no_such_variant"):
        load(overrides={"methods": ["baseline", "no_such_variant"]})


def test_a_new_variant_can_be_defined_and_used():
    config = load(
        overrides={"variants": {"mss": {"mi_weight": 1.0, "mi_estimator": "mss"}}, "methods": ["mss"]}
    )
    assert config["methods"] == ["mss"]
    assert "baseline" in config["variants"]  # added, not replacing config.yaml's variants


def test_a_family_rejects_another_familys_settings():
    with pytest.raises(ConfigError, match="'scc_weight' was unexpected"):
        load(overrides={"variants": {"dsvae": {"scc_weight": 1.0}}})


def test_dynamics_and_dsvae_table_methods_must_be_dsvae_variants():
    with pytest.raises(ConfigError, match="dynamics_methods \\['baseline'\\] are not DSVAE variants"):
        load(overrides={"dynamics_methods": ["baseline"]})
    with pytest.raises(ConfigError, match="dsvae_table1_methods \\['nope'\\] are not defined"):
        load(overrides={"dsvae_table1_methods": ["nope"]})


def test_a_datasets_own_judge_settings_win_and_the_tables_bars_are_no_judges_setting():
    judge = load()["judge"]
    smmnist, sprites = cfg.judge_settings(judge, "smmnist"), cfg.judge_settings(judge, "sprites")
    assert smmnist["family"] == "locating_judge" and sprites["family"] == "judge"
    assert smmnist["epochs"] == judge["datasets"]["smmnist"]["epochs"] != sprites["epochs"] == judge["epochs"]
    assert smmnist["bf16"] == sprites["bf16"] == judge["bf16"]  # what a dataset does not set is the section's
    assert not {"datasets", "min_accuracy"} & (set(smmnist) | set(sprites))


def test_merge_does_not_mutate_its_inputs():
    base = {"train": {"epochs": 5, "lr": 1.0}, "methods": ["a"]}
    merged = cfg.merge(base, {"train": {"epochs": 1}, "methods": ["b"]})
    assert merged == {"train": {"epochs": 1, "lr": 1.0}, "methods": ["b"]}
    assert base == {"train": {"epochs": 5, "lr": 1.0}, "methods": ["a"]}


def test_resolve_device():
    assert cfg.resolve_device("cpu") == "cpu"
    assert cfg.resolve_device("auto") in {"cpu", "cuda"}


def test_nested_command_line_strings_are_read_by_the_schema_types():
    """Snakemake passes `--config train='{epochs: 3}'` as {"epochs": "3"}: the schema's types decide."""
    config = load(
        overrides={
            "train": {"epochs": "3", "bf16": "false", "lr": "1e-3", "max_sequences": "null"},
            "evaluate": {"repeats": "2"},
            "judge": {"bf16": "auto"},
            "model": {"conv_channels": ["8", "16"]},
            "variants": {"dsvae": {"dynamic_dim": "8"}},
        }
    )
    assert config["train"]["epochs"] == 3 and config["evaluate"]["repeats"] == 2
    assert config["train"]["bf16"] is False and config["judge"]["bf16"] == "auto"
    assert config["train"]["lr"] == 0.001 and config["train"]["max_sequences"] is None
    assert config["model"]["conv_channels"] == [8, 16]
    assert config["variants"]["dsvae"]["dynamic_dim"] == 8
    assert config["seed"] == 0 and config["device"] == "auto"  # strings the schema wants stay strings


def test_coercion_leaves_values_the_schema_accepts():
    config = cfg.coerce({"preset": "smoke", "device": "cpu", "train": {"epochs": 3}})
    assert config == {"preset": "smoke", "device": "cpu", "train": {"epochs": 3}}


def test_a_missing_mirror_names_the_key_the_path_and_the_fix():
    with pytest.raises(ConfigError) as err:
        load(overrides={"mirror": "/nonexistent/dir"})
    message = str(err.value)
    assert "mirror /nonexistent/dir is not a folder" in message
    assert "--config mirror=../shared/data" in message and "mirror: null" in message


def test_an_existing_mirror_is_accepted(tmp_path):
    assert load(overrides={"mirror": str(tmp_path)})["mirror"] == str(tmp_path)


def resource_settings(default: list[str], per_rule: dict | None = None):
    """The two fields of Snakemake's `workflow.resource_settings` that `check_profile` reads."""
    from types import SimpleNamespace

    return SimpleNamespace(
        default_resources=SimpleNamespace(args=default), overwrite_resources=per_rule or {}
    )


def test_profile_placeholders_stop_a_real_run_and_warn_a_dry_run():
    settings = resource_settings(["mem_mb=8000", "slurm_partition=YOUR_PARTITION", "slurm_account=lab"])
    with pytest.raises(ConfigError) as err:
        cfg.check_profile(settings, dryrun=False)
    message = str(err.value)
    assert "slurm_partition=YOUR_PARTITION" in message and "slurm_account" not in message
    assert "fill in slurm_partition" in message and cfg.PROFILE_HINT in message
    assert cfg.check_profile(settings, dryrun=True) == message
    filled = resource_settings(["slurm_partition=gpu", "slurm_account=lab"])
    assert cfg.check_profile(filled, dryrun=False) is None
    assert cfg.check_profile(resource_settings([]), dryrun=False) is None  # no profile at all


def test_a_placeholder_in_set_resources_is_named_with_its_rule():
    class Resource:
        raw = "YOUR_GPU_PARTITION"

    settings = resource_settings(["mem_mb=8000"], {"train_model": {"slurm_partition": Resource()}})
    with pytest.raises(ConfigError, match="set-resources train_model: slurm_partition=YOUR_GPU_PARTITION"):
        cfg.check_profile(settings, dryrun=False)
