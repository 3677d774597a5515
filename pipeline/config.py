"""One source of configuration: config.yaml, then a preset, then overrides, validated before anything runs."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from pipeline.train.families import FAMILIES, variant_family

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PRESETS = ROOT / "workflow" / "presets"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FromConfig:
    """The default of a stage argument that comes from the workflow config: the value at `key` (dotted).

    A rule passes it as a param of the same name; a stage's command line reads it from config.yaml, the
    preset and `--set` (pipeline/stage.py); a Python caller passes it (`config_arguments` fills them in).
    config.yaml stays the one home of every such value."""

    key: str

    def __repr__(self) -> str:
        return f"config {self.key}"


def config_value(config: Mapping, key: str) -> object:
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def merge(base: Mapping, update: Mapping) -> dict:
    """Recursive dict merge; `update` wins, lists are replaced whole."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _scalar(text: str) -> object:
    """`text` read as an int, float, true/false or null, or returned as it is."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "~": None, "none": None}.get(text.lower(), text)


def _set(config: dict, path: list, value: object) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def coerce(config: Mapping) -> dict:
    """Read strings where the schema wants a number, boolean or null, as their own types.

    Snakemake passes nested `--config` values as strings (`train='{epochs: 3}'` gives `{"epochs": "3"}`),
    so a string that breaks a type or enum rule is replaced by its reading as a scalar (`_scalar`) when
    that reading is different; what still breaks a rule is left for `validate` to name.
    """
    config = copy.deepcopy(dict(config))
    validator = jsonschema.Draft202012Validator(_load_yaml(SCHEMA))
    for _ in range(1000):  # one pass per fixed value at most; a fixed value never breaks a rule again
        fixed = False
        for error in validator.iter_errors(config):
            if error.validator in ("type", "enum", "const") and isinstance(error.instance, str):
                value = _scalar(error.instance)
                if value is not error.instance:
                    _set(config, list(error.absolute_path), value)
                    fixed = True
                    break
        if not fixed:
            return config
    return config


def check_mirror(mirror: str | None, source: str = "config") -> None:
    """A mirror must be a folder, found from the working directory: checked before any job starts."""
    if mirror is None or Path(mirror).is_dir():
        return
    raise ConfigError(
        f"{source}: mirror {mirror} is not a folder (from {Path.cwd()}): point mirror at the folder that "
        "holds one sub-folder per source (e.g. --config mirror=../shared/data), or unset it (mirror: null, "
        "--config mirror=) to download from the original URLs"
    )


# The frame sides that no config key sets: the LPC sheets' cells (pipeline/data/sprites.py CELL) and
# SMMNIST's canvas (pipeline/data/smmnist.py MovingDigitsSpec); a test ties both to their builders. Every
# other dataset's is its section's image_size.
FIXED_FRAME_SIDES = {"sprites": 64, "smmnist": 64}


def _dataset_sections(config: Mapping, key: str) -> dict[str, object]:
    """{section: value of `key`} of the top-level sections holding `key` (dataset sections: image_size,
    train_sequences)."""
    return {name: part[key] for name, part in config.items() if isinstance(part, Mapping) and key in part}


def _geometry_errors(config: Mapping) -> list[str]:
    """What the image geometry asks that the schema cannot say: the flow grid divides every frame side it
    labels, and every conv stack halves every frame side down to a whole number of pixels."""
    sides = {**FIXED_FRAME_SIDES, **_dataset_sections(config, "image_size")}
    flow, errors = config["flow"], []
    if flow["topk"] > flow["grid"] ** 2:
        errors.append(f"flow.topk {flow['topk']} is more than the flow.grid**2 = {flow['grid'] ** 2} cells")
    for dataset, side in sides.items():
        if config["dfp_labels"].get(dataset, "flow") == "flow" and side % flow["grid"]:
            errors.append(f"flow.grid {flow['grid']} does not divide the {dataset} frame side {side}")
    stacks = {"model.conv_channels": config["model"]["conv_channels"]}
    stacks["judge.conv_channels"] = config["judge"]["conv_channels"]
    for dataset, own in config["judge"].get("datasets", {}).items():
        if own.get("conv_channels"):
            stacks[f"judge.datasets.{dataset}.conv_channels"] = own["conv_channels"]
    for name, variant in config["variants"].items():
        if variant.get("conv_channels"):
            stacks[f"variants.{name}.conv_channels"] = variant["conv_channels"]
    for key, channels in stacks.items():
        halving = 2 ** len(channels)
        odd = {d: side for d, side in sides.items() if side % halving}
        if odd:
            layers = f"{key} has {len(channels)} stride-2 layers"
            errors.append(f"{layers}: the frame sides {odd} are not divisible by {halving}")
    return errors


def _batch_errors(config: Mapping) -> list[str]:
    """Training splits smaller than one batch (the last partial batch is dropped: no step would be taken)."""
    batch, errors = config["train"]["batch_size"], []
    limited = config["train"]["max_sequences"]
    if limited is not None and limited < batch:
        errors.append(f"train.max_sequences {limited} is less than one train.batch_size of {batch}")
    for dataset, clips in _dataset_sections(config, "train_sequences").items():
        if clips < batch:
            errors.append(f"{dataset}.train_sequences {clips} is less than one train.batch_size of {batch}")
    return errors


def validate(config: Mapping, source: str = "config") -> None:
    schema = _load_yaml(SCHEMA)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
        raise ConfigError(
            f"{source} does not match {SCHEMA.relative_to(ROOT)}:\n"
            + "\n".join(lines)
            + "\nFix the key or value (each property of the schema has a description)."
        )
    variants = config["variants"]
    unknown = {m: variant_family(v) for m, v in variants.items() if variant_family(v) not in FAMILIES}
    if unknown:
        raise ConfigError(
            f"{source}: variants {unknown} name no registered family: use one of {sorted(FAMILIES)}, or "
            "register yours in pipeline/train/families.py"
        )
    for key in ("methods", "dsvae_table1_methods", "dynamics_methods"):
        unknown = [m for m in config[key] if m not in variants]
        if unknown:
            raise ConfigError(
                f"{source}: {key} {unknown} are not defined under 'variants' ({sorted(variants)})"
            )
    for table, methods in config["table_methods"].items():
        unknown = [m for m in methods if m not in variants]
        if unknown:
            raise ConfigError(
                f"{source}: table_methods.{table} {unknown} are not defined under 'variants' "
                f"({sorted(variants)})"
            )
    for key in ("dsvae_table1_methods", "dynamics_methods"):
        others = [m for m in config[key] if variants[m].get("family") != "dsvae"]
        if others:
            raise ConfigError(f"{source}: {key} {others} are not DSVAE variants: give them 'family: dsvae'")
    audio = config["audio"]
    unknown = [m for m in audio["methods"] if m not in audio["models"]]
    if unknown:
        raise ConfigError(
            f"{source}: audio.methods {unknown} are not defined under 'audio.models' "
            f"({sorted(audio['models'])})"
        )
    unknown = [
        m["variant"]
        for m in audio["models"].values()
        if m["family"] == "s3vae" and m["variant"] not in config["variants"]
    ]
    if unknown:
        raise ConfigError(f"{source}: audio.models use variants {unknown} that 'variants' does not define")
    if "timit" in config["audio_datasets"] and config["timit"]["root"] is None:
        raise ConfigError(
            f"{source}: audio_datasets lists timit but timit.root is null: set it to your TIMIT copy "
            "(LDC93S1), e.g. --config timit='{root: /data/TIMIT}', or drop timit"
        )
    errors = _geometry_errors(config) + _batch_errors(config)
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors) + ": change the keys named")
    check_mirror(config["mirror"], source)


def resolve(base: Mapping, overrides: Mapping | None = None, source: str = "config.yaml") -> dict:
    """Merge `base` (config.yaml), the preset it or `overrides` name, and `overrides`; validate the result."""
    overrides = dict(overrides or {})
    preset = overrides.get("preset", base.get("preset", "paper"))
    config = dict(base)
    if preset != "paper":
        preset_file = PRESETS / f"{preset}.yaml"
        if not preset_file.exists():
            known = sorted(p.stem for p in PRESETS.glob("*.yaml")) + ["paper"]
            raise ConfigError(f"unknown preset '{preset}': no {preset_file}; choose one of {known}")
        config = merge(config, _load_yaml(preset_file))
    config = coerce(merge(config, overrides))
    config["preset"] = preset
    validate(config, source)
    return config


def load(path: str | os.PathLike = ROOT / "config.yaml", overrides: Mapping | None = None) -> dict:
    return resolve(_load_yaml(Path(path)), overrides, source=str(path))


_PLACEHOLDER = re.compile(r"YOUR_[A-Z_]+")
PROFILE_HINT = "workflow/profiles/slurm/profile.yaml"


def profile_placeholders(resource_settings) -> list[str]:
    """Every `default-resources` / `set-resources` entry of the profile still holding a YOUR_... value.

    `resource_settings` is the Snakefile's `workflow.resource_settings`: `default_resources.args` lists
    `name=value` strings, `overwrite_resources` maps rule -> name -> Resource (its `raw` value).
    """
    found = [
        f"default-resources {arg}"
        for arg in getattr(resource_settings.default_resources, "args", None) or []
        if _PLACEHOLDER.search(str(arg))
    ]
    for rule, resources in (resource_settings.overwrite_resources or {}).items():
        for name, resource in resources.items():
            raw = getattr(resource, "raw", resource)
            if isinstance(raw, str) and _PLACEHOLDER.search(raw):
                found.append(f"set-resources {rule}: {name}={raw}")
    return found


def check_profile(resource_settings, *, dryrun: bool) -> str | None:
    """Stop a real run whose profile keeps placeholders; a dry run gets the message back, to warn."""
    found = profile_placeholders(resource_settings)
    if not found:
        return None
    names = sorted({entry.split(" ", 1)[1].split(": ")[-1].split("=")[0] for entry in found})
    message = (
        f"the profile leaves {'; '.join(found)}: fill in {', '.join(names)} for your cluster in "
        f"{PROFILE_HINT} (or in the profile you passed; `sinfo -s` lists the partitions, "
        "`sacctmgr show assoc user=$USER` your accounts)"
    )
    if dryrun:
        return message
    raise ConfigError(message)


def fast_bf16(device: str) -> bool:
    """Whether bf16 matmuls run natively: CUDA with bf16 support, or a CPU with AVX512-BF16 or AMX.

    Elsewhere torch emulates bf16 through fp32 and autocast makes training several times slower.
    """
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(setting: bool | str, device: str) -> bool:
    return fast_bf16(device) if setting == "auto" else bool(setting)


def judge_settings(judge: Mapping, dataset: str) -> dict:
    """A dataset's judge settings: its own (`judge.datasets`) over the `judge` section's. The tables' bars
    (`min_accuracy`) are left out, so that changing one retrains no judge."""
    shared = {key: value for key, value in judge.items() if key not in ("datasets", "min_accuracy")}
    return {**shared, **judge.get("datasets", {}).get(dataset, {})}


def requested_gpus(device: str, computes_on_gpu: bool = True) -> int:
    """The GPUs a job asks the scheduler for (its rule's `gpu` resource, which the SLURM plugin turns into
    `--gpus=1`): one when its stage computes on the GPU (`computes_on_gpu`: trainings, scoring, RAFT flow,
    FAN landmarks) and config `device` lets it, none otherwise.

    `auto` asks for one, as `cuda` does: it is resolved where the job runs (`resolve_device`), and the host
    that plans and submits the jobs cannot see a cluster's GPUs. So `device: cpu` is what a CPU-only
    partition needs; on a node without a GPU an `auto` job that was given none still runs on the CPU."""
    return int(computes_on_gpu and device != "cpu")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: cuda was asked for, but torch sees no CUDA device; set device: auto or cpu"
        )
    return name
