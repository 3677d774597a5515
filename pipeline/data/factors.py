"""A dataset's labelled factors, and the judge heads they make: one per ungrouped factor and one per group.

A head recognises one labelled factor, or one group of factors that share their classes (h5io `group`):
an order-free multiset such as SMMNIST's two digits. How a head is trained and read:
pipeline/evaluate/heads.py. Torch-free: model configs are derived from the factors where torch is not
imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Factor:
    name: str
    kind: str  # "static" (constant over a clip) or "dynamic" (changes over time)
    classes: tuple[str, ...]
    group: str | None = None  # factors of one group form an order-free multiset (pipeline/data/h5io.py)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class JudgeHead:
    name: str  # the factor's name, or the group's
    kind: str  # "static" or "dynamic"
    classes: tuple[str, ...]
    members: tuple[str, ...]  # the factors it recognises, order-free

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def judge_heads(factors: Sequence[Factor]) -> list[JudgeHead]:
    """One head per ungrouped factor and one per group, in the order the factors are listed."""
    heads: dict[str, JudgeHead] = {}
    for factor in factors:
        name = factor.group or factor.name
        if name in heads:
            head = heads[name]
            if (head.classes, head.kind) != (factor.classes, factor.kind):
                raise ValueError(f"factors of group '{name}' differ in classes or kind: {factors}")
            heads[name] = JudgeHead(name, head.kind, head.classes, (*head.members, factor.name))
        else:
            heads[name] = JudgeHead(name, factor.kind, factor.classes, (factor.name,))
    return list(heads.values())
