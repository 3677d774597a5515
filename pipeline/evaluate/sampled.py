"""Table 1 for a model without an encoder (MoCoGAN): a sampled code is kept, the judge's verdict is the label.

Table 1 keeps one latent of a real clip and resamples the other; MoCoGAN cannot infer a clip's latents, so
"keep" means keep a sampled code and "real labels" become the judge's own verdict. `table1_probabilities`
draws `groups` groups of `group_size` clips:

- fixed_dynamics: a group shares its motion noise eps_1:T; each clip draws its own content z_C.
- fixed_static: a group shares z_C; each clip draws its own motion noise.

A group's label of a factor is the judge's majority vote over the group's clips (dynamic factors in the
fixed_dynamics groups, static factors in the fixed_static groups; an order-free head such as SMMNIST's
`digits` votes with whole multisets), so Acc is how often the judge agrees
with its group's majority: the fraction of clips whose kept factor survived resampling the other code.
IS, H(y|x) and H(y) use the judge's dynamic-factor probabilities of the generated clips, which are
unconditional samples in both directions (fixed_dynamics on a subset balanced over the group labels, as
for the VAEs). `table1_probabilities` returns what `pipeline.evaluate.table1.score_run` takes, so every
score is computed by the code that scores the other families.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.evaluate import heads


def _majority(rows: np.ndarray) -> np.ndarray:
    """The most frequent row of (n, m) integer rows (ties: the smallest), as (m,)."""
    values, counts = np.unique(rows, axis=0, return_counts=True)
    return values[counts.argmax()]


@torch.no_grad()
def table1_probabilities(
    model: nn.Module,
    judge: nn.Module,
    judge_heads,
    *,
    directions: tuple[str, ...],
    groups: int,
    group_size: int,
    steps: int,
    batch_size: int,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Judge probabilities of generated clips in `directions` (see the module docstring) and the group
    majority labels: ({direction: {head: (groups * group_size, K)}}, {factor: (groups * group_size,)}), the
    arguments `pipeline.evaluate.table1.score_run` takes. `judge_heads` are the dataset's
    (`pipeline.data.factors.judge_heads`): a group head (SMMNIST's order-free `digits`) votes with the
    multiset it predicts, and the majority multiset becomes its member factors' labels. Heads whose kind
    is not kept by any of `directions` get no labels (score_run reads none)."""
    c = model.config
    like = next(model.parameters())
    n = groups * group_size

    def shared(*shape: int) -> Tensor:  # one draw per group, repeated for its clips
        return torch.randn(groups, *shape, device=like.device).repeat_interleave(group_size, dim=0)

    def fresh(*shape: int) -> Tensor:
        return torch.randn(n, *shape, device=like.device)

    codes = {
        "fixed_dynamics": lambda: (fresh(c.content_dim), shared(steps, c.noise_dim)),
        "fixed_static": lambda: (shared(c.content_dim), fresh(steps, c.noise_dim)),
    }
    probs: dict[str, dict[str, np.ndarray]] = {}
    for direction in directions:
        content, noise = codes[direction]()
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in judge.config.heads}
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            clips = model.generate(len(content[rows]), steps, content[rows], noise[rows])
            for name, logits in judge(clips).items():
                chunks[name].append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        probs[direction] = {name: np.concatenate(parts) for name, parts in chunks.items()}

    labels = {}
    for head in judge_heads:
        direction = "fixed_dynamics" if head.kind == "dynamic" else "fixed_static"
        if direction not in probs:
            continue
        votes = heads.predict(head, probs[direction][head.name]).reshape(
            groups, group_size, len(head.members)
        )
        majority = np.stack([_majority(group) for group in votes]).repeat(group_size, axis=0)  # (n, m)
        labels.update({member: majority[:, i] for i, member in enumerate(head.members)})
    return probs, labels
