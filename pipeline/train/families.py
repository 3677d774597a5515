"""Every model family the workflow trains or loads, in one registry: how its config is derived, how it is
trained, what it needs. Adding a family: its module in models/, one `Family` entry (and its config builder)
here, and its variants in config.yaml.

Torch-free: Snakemake imports this module while it parses the workflow (variants, seeds, label inputs), so
model classes are named by import path and loaded only when a model is built.

A config builder maps `ModelInputs` to the keyword arguments of the family's config dataclass: the frame
geometry from the dataset, the shared architecture section (`model`, `audio.model` or `judge`), then the
variant's own settings, which win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.data.factors import judge_heads

TRAINING_KEYS = ("epochs", "seeds", "lr")  # of a variant: how its row is trained, not model settings


@dataclass(frozen=True)
class ModelInputs:
    """What a config builder reads."""

    architecture: Mapping  # the shared section: config `model` (video), `audio.model` or `judge`
    settings: Mapping  # the variant's own model settings (`variant_settings`)
    data: object  # the training clips (pipeline.data.clips.ClipSet): factors, targets
    attrs: Mapping  # the dataset file's root attributes (pipeline/data/h5io.py)
    label_attrs: Mapping = field(default_factory=dict)  # the pseudo-label file's attributes, if any


@dataclass(frozen=True)
class Family:
    model: str  # "module:Class" of the torch module
    config: str  # "module:Class" of its config dataclass
    build_config: Callable[[ModelInputs], dict]
    trainer: str = "elbo"  # "elbo" (fit on its negative ELBO), "adversarial" (fit_gan) or "classifier"
    labels: tuple[str, ...] = ()  # pseudo-label files it trains on, by labeller (S3VAE's DFP: "flow")
    encoder: bool = True  # has a posterior q(z_f, z_1:T | x) for real clips (else its codes are sampled)
    frame_latents: bool = False  # z_t codes frame t alone: decodable frame by frame (the z-plane figures)

    @property
    def model_class(self) -> type:
        return _load(self.model)

    @property
    def config_class(self) -> type:
        return _load(self.config)

    def build(self, inputs: ModelInputs):
        """An untrained model for `inputs`."""
        return self.model_class(self.config_class(**self.build_config(inputs)))

    def rebuild(self, saved_config: Mapping):
        """The model a checkpoint's `config` (its dataclass as a dict) describes, untrained."""
        return self.model_class(self.config_class(**_tuples(saved_config)))


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _tuples(settings: Mapping) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def _frame_geometry(inputs: ModelInputs) -> dict:
    """Frame size from the dataset: images (T, H, W, C) through the shared conv widths, or feature vectors
    (T, D) through a per-frame MLP."""
    shape = [int(v) for v in inputs.attrs["frame_shape"]]
    if inputs.attrs["modality"] == "audio":
        return {"frame_kind": "vector", "feature_dim": shape[1]}
    _, H, _, C = shape
    return {"in_channels": C, "image_size": H, "conv_channels": tuple(inputs.architecture["conv_channels"])}


def _vae_architecture(inputs: ModelInputs) -> dict:
    """The shared section for a VAE family, overridden by the variant's settings. The frame likelihood is the
    dataset's (`model.likelihood`), so that a table's rows differ in their model, not in their likelihood,
    unless a variant sets its own."""
    part = inputs.architecture
    shared = {
        k: part[k]
        for k in ("frame_dim", "hidden_dim", "static_dim", "dynamic_dim", "pixel_sigma")
        if k in part
    }
    if "likelihood" in part:
        shared["likelihood"] = part["likelihood"].get(str(inputs.attrs["name"]), "gaussian")
    return {**_frame_geometry(inputs), **shared, **_tuples(inputs.settings)}


def _dfp_target(label_attrs: Mapping, wanted: str) -> dict:
    """What L_DFP predicts on video, from the label file it trains on: the landmark labels' three distances,
    standardised by their training-split statistics; or from a flow label file the target the row asks for
    (`wanted`): the top-k cells of a G x G grid, or the authors' directions of G' x G' cells."""
    if "distance_names" in label_attrs:
        return {
            "dfp_target": "landmark_distances",
            "dfp_classes": len(label_attrs["distance_names"]),
            "dfp_target_mean": tuple(float(v) for v in label_attrs["distance_mean"]),
            "dfp_target_std": tuple(float(v) for v in label_attrs["distance_std"]),
        }
    if wanted == "flow_direction":
        if "direction_grid" not in label_attrs:
            raise ValueError(
                "the flow labels hold no flow_direction (attribute direction_grid): they were made before "
                "label_flow wrote them; rebuild them with `snakemake [TARGET ...] --forcerun label_flow`"
            )
        return {"dfp_target": "flow_direction", "dfp_classes": int(label_attrs["direction_grid"]) ** 2}
    grid = int(label_attrs["grid"])
    return {"dfp_target": "flow_topk", "dfp_classes": grid * grid}


def s3vae_config(inputs: ModelInputs) -> dict:
    """An S3VAE row: the shared architecture plus the variant's regulariser weights. On video, L_DFP predicts
    the flow or landmark labels (`_dfp_target`) and the label heads read the dataset's factors; on speech it
    predicts the silence labels (S3VAE section 4.2)."""
    architecture = _vae_architecture(inputs)
    if inputs.attrs["modality"] == "audio":
        return {**architecture, "dfp_target": "silence", "dfp_classes": 1}
    heads = judge_heads(inputs.data.factors)
    return {
        "static_classes": {h.name: h.n_classes for h in heads if h.kind == "static"},
        "dynamic_classes": {h.name: h.n_classes for h in heads if h.kind == "dynamic"},
        "dynamic_regression": {
            name: inputs.data.targets[name][0, 0].numel() for name in inputs.data.trajectories
        },
        **architecture,
        **_dfp_target(inputs.label_attrs, architecture.get("dfp_target", "flow_topk")),
    }


def mocogan_config(inputs: ModelInputs) -> dict:
    """MoCoGAN: the shared conv widths for G_I, D_I and D_V; code sizes from the variant (50, 10, 10)."""
    frame = _frame_geometry(inputs)
    channels = frame.pop("conv_channels")
    return {
        **frame,
        "generator_channels": channels,
        "discriminator_channels": channels,
        **_tuples(inputs.settings),
    }


def fhvae_config(inputs: ModelInputs) -> dict:
    """FHVAE (speech only): one mu2 row per training utterance (`sequence_index`, pipeline/train/audio.py)."""
    T, feature_dim = (int(v) for v in inputs.attrs["frame_shape"])
    return {
        "feature_dim": feature_dim,
        "segment_frames": T,
        "hidden_dim": inputs.architecture["hidden_dim"],
        "num_sequences": int(inputs.data.targets["sequence_index"].max()) + 1,
        **_tuples(inputs.settings),
    }


def judge_config(inputs: ModelInputs) -> dict:
    """The judge: its own `judge` section's widths, a head per factor or group of the dataset."""
    part = inputs.architecture
    return {
        **_frame_geometry(inputs),
        "frame_dim": part["frame_dim"],
        "hidden_dim": part["hidden_dim"],
        "heads": {h.name: h.n_classes for h in judge_heads(inputs.data.factors)},
    }


def locating_judge_config(inputs: ModelInputs) -> dict:
    """The judge that finds each object of the dataset's one group head where the dataset's `position`
    trajectory puts it (SMMNIST's digits): its widths from its `judge` settings, the objects' side from the
    dataset file."""
    heads = judge_heads(inputs.data.factors)
    groups = [h for h in heads if len(h.members) > 1]
    position = inputs.data.targets.get("position")
    if (
        len(heads) != 1
        or not groups
        or position is None
        or tuple(position.shape[2:]) != (len(groups[0].members), 2)
    ):
        raise ValueError(
            "the locating judge reads one group of objects with a `position` (N, T, objects, 2) trajectory; "
            f"{inputs.attrs['name']} has heads {[h.name for h in heads]}: give it family 'judge' "
            "(config judge.datasets)"
        )
    if "object_size" not in inputs.attrs:
        raise ValueError(
            f"the {inputs.attrs['name']} dataset file has no `object_size` attribute (written since the "
            f"locating judge): rebuild it (snakemake --forcerun build_{inputs.attrs['name']})"
        )
    return {
        **_frame_geometry(inputs),
        "refine_layers": inputs.architecture["refine_layers"],
        "object_size": int(inputs.attrs["object_size"]),
        "heads": {h.name: h.n_classes for h in heads},
    }


FAMILIES = {
    "s3vae": Family("models.s3vae:S3VAE", "models.s3vae:S3VAEConfig", s3vae_config, labels=("flow",)),
    "dsvae": Family("models.dsvae:DSVAE", "models.dsvae:DSVAEConfig", _vae_architecture),
    "unordered": Family(
        "models.unordered:Unordered",
        "models.unordered:UnorderedConfig",
        _vae_architecture,
        frame_latents=True,
    ),
    "mocogan": Family(
        "models.mocogan:MoCoGAN", "models.mocogan:MoCoGANConfig", mocogan_config, "adversarial", encoder=False
    ),
    "fhvae": Family("models.fhvae:FHVAE", "models.fhvae:FHVAEConfig", fhvae_config),
    "judge": Family(
        "models.judge:Judge", "models.judge:JudgeConfig", judge_config, "classifier", encoder=False
    ),
    "locating_judge": Family(
        "models.judge:LocatingJudge",
        "models.judge:LocatingJudgeConfig",
        locating_judge_config,
        "classifier",
        encoder=False,
    ),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(
            f"unknown model family '{name}': known are {sorted(FAMILIES)} (pipeline/train/families.py)"
        )
    return FAMILIES[name]


def family_of_model(model) -> Family:
    """The family of a built model (`load_model`'s result)."""
    for candidate in FAMILIES.values():
        if type(model) is candidate.model_class:
            return candidate
    raise KeyError(f"{type(model).__name__} is no registered family's model (pipeline/train/families.py)")


def variant_family(variant: Mapping) -> str:
    """The family of a `variants` entry (default s3vae)."""
    return variant.get("family") or "s3vae"


def variant_settings(variant: Mapping) -> dict:
    """A `variants` entry's model settings: unset ones, its family and how its row is trained dropped."""
    return {k: v for k, v in variant.items() if v is not None and k not in (*TRAINING_KEYS, "family")}


def audio_variant(spec: Mapping, variants: Mapping, dim: int) -> dict:
    """The variant of audio row `spec` (an `audio.models` entry) with `dim`-d latents (z_f and each z_t; z2
    and z1 for FHVAE): S3VAE takes its regulariser weights from the `variants` entry it names."""
    settings = {k: v for k, v in spec.items() if k not in ("family", "variant")}
    if spec["family"] == "s3vae":
        settings = {**variant_settings(variants[spec["variant"]]), **settings}
    return {"family": spec["family"], **settings, "static_dim": dim, "dynamic_dim": dim}


def seeds_of(variant: Mapping, train_seeds: int) -> list[int]:
    """The training seeds of a row: its own `seeds` count where it sets one, else train.seeds."""
    return list(range(variant.get("seeds") or train_seeds))
