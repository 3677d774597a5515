"""Stage `plot_figures`: what a trained model does with its two latents, as pictures.

- swap grid (S3VAE Fig. 4): for pairs of test clips A, B the rows show A, B, then z_f(A) with z_1:T(B)
  and z_f(B) with z_1:T(A);
- generations (S3VAE Fig. 7a): one z_f with several z_1:T drawn from the learned prior, and one
  z_1:T with several z_f drawn from p(z_f).
A model without an encoder (MoCoGAN) gets the same two figures from codes it samples instead of posterior
means: clips A and B with their content and motion codes swapped; one content with several motions and
one motion with several contents.

The unordered-frames model also gets its latent-space figures (Helminger et al.):
- z grid (its Fig. 3): single frames decoded over a grid of the first two z dimensions, f fixed to the
  posterior mean of one clip, for two identities side by side;
- z trace (its Fig. 4b): the posterior mean of one z dimension along the frames of a few test clips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from pipeline.config import FromConfig, resolve_device  # noqa: E402
from pipeline.data.clips import load_clips, to_uint8  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402
from pipeline.train.checkpoint import load_model  # noqa: E402
from pipeline.train.families import family_of_model  # noqa: E402


def save_clip_grid(path: str, rows: list[np.ndarray], labels: list[str], title: str) -> None:
    """One clip per row (T, H, W, C uint8), frames left to right, a label left of each row."""
    strip = np.concatenate([np.concatenate(list(clip), axis=1) for clip in rows], axis=0)
    height = rows[0].shape[1]
    fig, ax = plt.subplots(
        figsize=(strip.shape[1] / 64 * 0.9 + 1.8, strip.shape[0] / 64 * 0.9 + 0.5), dpi=110
    )
    if strip.shape[-1] == 1:  # grayscale (SMMNIST)
        ax.imshow(strip[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(strip)
    ax.set_yticks([height * (i + 0.5) for i in range(len(rows))], labels, fontsize=8)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


@dataclass(frozen=True)
class Codes:
    """Per clip a static and a dynamic code (B, ...), how a pair is decoded, and how each is drawn anew."""

    clips: np.ndarray  # (B, T, H, W, C) uint8: the clips the codes stand for
    source: str  # "real" (posterior means of test clips) or "sampled"
    names: tuple[str, str]  # what the static and the dynamic code are called in the figures' labels
    static: Tensor  # (B, D_f)
    dynamic: Tensor  # (B, T, D_z)
    decode: Callable[[Tensor, Tensor], Tensor]
    sample_static: Callable[[int], Tensor]  # n -> (n, D_f)
    sample_dynamic: Callable[[Tensor], Tensor]  # static (n, D_f) -> (n, T, D_z)


def encoded_codes(net: nn.Module, x: Tensor) -> Codes:
    """A VAE's posterior means of the clips x (B, T, C, H, W) and its priors."""
    q_static, q_dynamic = net.encode(x)
    static, dynamic = q_static.mean, q_dynamic.mean
    return Codes(
        clips=to_uint8(x),
        source="real",
        names=("z_f", "z_1:T"),
        static=static,
        dynamic=dynamic,
        decode=net.decode,
        sample_static=lambda n: net.sample_static(n, like=static),
        sample_dynamic=lambda f: net.sample_dynamic(len(f), x.shape[1], like=dynamic, static=f),
    )


def sampled_codes(net: nn.Module, batch: int, steps: int) -> Codes:
    """MoCoGAN's content codes and motion noise, drawn for `batch` clips of `steps` frames."""
    c = net.config
    like = next(net.parameters())

    def contents(n: int) -> Tensor:
        return torch.randn(n, c.content_dim, device=like.device)

    def motions(static: Tensor) -> Tensor:
        return torch.randn(len(static), steps, c.noise_dim, device=like.device)

    def decode(static: Tensor, dynamic: Tensor) -> Tensor:
        return net.generate(len(static), steps, static, dynamic)

    static = contents(batch)
    dynamic = motions(static)
    clips = to_uint8(decode(static, dynamic))
    return Codes(clips, "sampled", ("content", "motion"), static, dynamic, decode, contents, motions)


def figure_clips(model: str, dataset: str, *, seed: int, device: str) -> tuple[nn.Module, Tensor, Tensor]:
    """The model, seeded, and the test clips its figures show: (model, picked indices, clips x)."""
    device = resolve_device(device)
    torch.manual_seed(seed)
    net = load_model(model, device)
    data = load_clips(dataset, "test")
    # Clips of different identities and motions (Sprites stores a character's 9 actions in a row).
    picks = torch.tensor([0, 13, 40, 62])[: len(data)] % len(data)
    x, _ = data.batch(picks, device)
    return net, picks, x


@torch.no_grad()
def plot_figures(
    *,
    model: str,
    dataset: str,
    swap: str,
    generation: str,
    method: str,
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """The swap grid (`swap`) and the fixed-latent generations (`generation`) of row `method` (module doc)."""
    net, picks, x = figure_clips(model, dataset, seed=seed, device=device)
    codes = (
        encoded_codes(net, x) if family_of_model(net).encoder else sampled_codes(net, len(picks), x.shape[1])
    )
    static_name, dynamic_name = codes.names
    rows, labels = [], []
    for a, b in [(0, 1), (2, 3)][: len(picks) // 2]:
        swapped = codes.decode(codes.static[[a, b]], codes.dynamic[[b, a]])
        rows += [codes.clips[a], codes.clips[b], *to_uint8(swapped)]
        labels += [f"A{a}", f"B{b}"]
        labels += [f"{static_name}(A{a}) {dynamic_name}(B{b})", f"{static_name}(B{b}) {dynamic_name}(A{a})"]
    save_clip_grid(swap, rows, labels, f"{method}: static/dynamic swap ({codes.source} clips)")

    n = 4
    static = codes.static[:1].expand(n, -1)
    fixed_static = codes.decode(static, codes.sample_dynamic(static))
    fixed_dynamic = codes.decode(codes.sample_static(n), codes.dynamic[:1].expand(n, -1, -1))
    rows = [codes.clips[0], *to_uint8(fixed_static), *to_uint8(fixed_dynamic)]
    labels = (
        [codes.source] + [f"fix z_f, z~p {i}" for i in range(n)] + [f"fix z_1:T, f~p {i}" for i in range(n)]
    )
    save_clip_grid(generation, rows, labels, f"{method}: generation with one latent fixed")


Z_GRID_SIDE = 7  # frames per side of the z grid
Z_GRID_RANGE = 2.0  # the grid spans [-2, 2] in each z dimension: +-2 standard deviations of N(0, I)


def z_grid_frames(net: nn.Module, static: Tensor) -> Tensor:
    """Frames decoded over a grid of z dimensions 0 (columns) and 1 (rows), the other dimensions at 0, with
    f (D_f,) fixed: (side, side, C, H, W)."""
    side, D_z = Z_GRID_SIDE, net.config.dynamic_dim
    values = torch.linspace(-Z_GRID_RANGE, Z_GRID_RANGE, side, device=static.device)
    z = static.new_zeros(side, side, D_z)
    z[..., 0] = values[None, :]
    if D_z > 1:
        z[..., 1] = values.flip(0)[:, None]  # rows run top to bottom from +range to -range, as a y axis
    frames = net.decode(static[None].expand(side * side, -1), z.view(side * side, 1, D_z))
    return frames.view(side, side, *frames.shape[2:])


@torch.no_grad()
def plot_latent_space(
    *,
    model: str,
    dataset: str,
    grid: str,
    trace: str,
    method: str,
    seed: int = FromConfig("seed"),
    device: str = FromConfig("device"),
) -> None:
    """The unordered model's z grid for two identities (its Fig. 3) and one z dimension along clips (4b)."""
    net, picks, x = figure_clips(model, dataset, seed=seed, device=device)
    if not family_of_model(net).frame_latents:
        raise ValueError(
            f"{model} is a {type(net).__name__}, whose z_t is not a code of frame t alone: the latent-space "
            "figures are of a family with frame latents (family: unordered)"
        )
    q_static, q_dynamic = net.encode(x)

    identities = [0, 1][: len(picks)]
    fig, axes = plt.subplots(1, len(identities), figsize=(4.2 * len(identities), 4.4), dpi=110, squeeze=False)
    for ax, i in zip(axes[0], identities, strict=True):
        frames = to_uint8(z_grid_frames(net, q_static.mean[i]))  # (side, side, H, W, C)
        mosaic = np.concatenate([np.concatenate(list(row), axis=1) for row in frames], axis=0)
        ax.imshow(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"f of test clip {int(picks[i])}", fontsize=9)
        ax.set_xlabel(f"z[0] from {-Z_GRID_RANGE} to {Z_GRID_RANGE}", fontsize=8)
        ax.set_ylabel(f"z[1] from {Z_GRID_RANGE} to {-Z_GRID_RANGE}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{method}: decodings over the z plane with f fixed", fontsize=10)
    save_figure(fig, grid)

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    for i, clip in enumerate(q_dynamic.mean[..., 0].float().cpu().numpy()):
        ax.plot(np.arange(1, len(clip) + 1), clip, marker="o", label=f"test clip {int(picks[i])}")
    ax.set_xlabel("frame")
    ax.set_ylabel("posterior mean of z[0]")
    ax.set_title(f"{method}: one z dimension along a sequence", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, trace)


def save_figure(fig, path: str) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(plot_figures, plot_latent_space)
