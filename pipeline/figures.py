"""Stage `plot_figures`: what a trained model does with its two latents, as pictures.

- swap grid (S3VAE Fig. 4): for pairs of test clips A, B the rows show A, B, then z_f(A) with z_1:T(B)
  and z_f(B) with z_1:T(A);
- generations (S3VAE Fig. 7a): one z_f with several z_1:T drawn from the learned prior, and one
  z_1:T with several z_f drawn from p(z_f).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.config import resolve_device  # noqa: E402
from pipeline.data import load_clips, to_uint8  # noqa: E402
from pipeline.h5io import atomic_path  # noqa: E402
from pipeline.train import load_model  # noqa: E402


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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@torch.no_grad()
def plot_figures(*, model: str, dataset: str, swap: str, generation: str, config: dict, method: str) -> None:
    device = resolve_device(config["device"])
    torch.manual_seed(config["seed"])
    net = load_model(model, device)
    data = load_clips(dataset, "test")
    # Clips of different identities and motions (Sprites stores a character's 9 actions in a row).
    picks = torch.tensor([0, 13, 40, 62])[: len(data)] % len(data)
    x, _ = data.batch(picks, device)
    static, dynamic = net.encode(x)
    rows, labels = [], []
    for a, b in [(0, 1), (2, 3)][: len(picks) // 2]:
        swapped = net.decode(static.mean[[a, b]], dynamic.mean[[b, a]])
        rows += [to_uint8(x[[a]])[0], to_uint8(x[[b]])[0], *to_uint8(swapped)]
        labels += [f"A{a}", f"B{b}", f"f(A{a}) z(B{b})", f"f(B{b}) z(A{a})"]
    save_clip_grid(swap, rows, labels, f"{method}: static/dynamic swap")

    T, n = x.shape[1], 4
    fixed_static = net.decode(static.mean[:1].expand(n, -1), net.sample_dynamic(n, T, like=dynamic.mean))
    fixed_dynamic = net.decode(net.sample_static(n, like=static.mean), dynamic.mean[:1].expand(n, -1, -1))
    rows = [to_uint8(x[:1])[0], *to_uint8(fixed_static), *to_uint8(fixed_dynamic)]
    labels = ["real"] + [f"fix z_f, z~p {i}" for i in range(n)] + [f"fix z_1:T, f~p {i}" for i in range(n)]
    save_clip_grid(generation, rows, labels, f"{method}: generation with one latent fixed")
