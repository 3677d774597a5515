"""The files of the results/ layout, whatever their format: written atomically, identified by content, and
when one cannot be read, an error that names it, what is wrong and the rule that remakes it.

Torch- and HDF5-free: the dataset readers (pipeline/data/h5io.py), the model files
(pipeline/train/checkpoint.py) and the tables' CSV readers all report a damaged file the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks, so a large dataset is never held whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(roots: Iterable[str | os.PathLike], pattern: str = "*.py") -> str:
    """One sha256 over every file matching `pattern` under the folders `roots`, names and bytes, in a fixed
    order (names relative to each root's parent, so `pipeline/x.py` and `models/x.py` differ)."""
    digest = hashlib.sha256()
    for root in map(Path, roots):
        for path in sorted(root.rglob(pattern)):
            name = path.relative_to(root.parent).as_posix()
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class DamagedFileError(OSError):
    """A file that exists but cannot be read (truncated, corrupted bytes, or not what its name says)."""


# Which rule of the workflow writes a file, from its path (the results/ layout in the Snakefile's header).
_PRODUCERS = (
    (r"data/(?:fsdd|timit)\.h5", "build_audio"),
    (r"data/([a-z0-9]+)\.h5", "build_{}"),
    (r"labels/[a-z0-9]+/(flow|silence|landmarks)\.h5", "label_{}"),
    (r"models/[a-z0-9]+/[a-z0-9_]+/seed[0-9]+/(?:model\.pt|run/metrics\.csv)", "train_model"),
    (r"models/[a-z0-9]+/[a-z0-9_]+/z[0-9]+/(?:model\.pt|run/metrics\.csv)", "train_audio_model"),
    (r"judges/[a-z0-9]+/(?:judge\.pt|accuracy\.csv)", "train_judge"),
    (r"metrics/[a-z0-9]+/[a-z0-9_]+/seed[0-9]+\.csv", "evaluate_model"),
    (r"metrics/[a-z0-9]+/[a-z0-9_]+/seed[0-9]+_diagnostics\.csv", "diagnose_model"),
    (r"metrics/[a-z0-9]+/[a-z0-9_]+/z[0-9]+_verification\.csv", "evaluate_verification"),
)
_PRODUCER_PATTERNS = tuple((re.compile(rf"(?:^|/)results/{p}$"), rule) for p, rule in _PRODUCERS)


def producing_rule(path: str | os.PathLike) -> str | None:
    """The workflow rule that writes `path` (`results/data/dsprites.h5` -> `build_dsprites`), if any."""
    text = Path(path).as_posix()
    for pattern, rule in _PRODUCER_PATTERNS:
        if match := pattern.search(text):
            return rule.format(*match.groups())
    return None


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to remake `path`: Snakemake keeps a damaged output as up to date, so a plain rerun fails again."""
    rule = producing_rule(path)
    if rule is None:
        return f"delete {path} and rerun the stage that wrote it"
    return (
        f"rebuild it with `snakemake [TARGET ...] --forcerun {rule}` and your --config (targets first: "
        f"--forcerun and --config take several values; what depends on it reruns too), or delete {path} "
        "so that the next run remakes it"
    )


def damaged(path: str | os.PathLike, what: str) -> DamagedFileError:
    """The error for `path`, which exists but `what` (e.g. "is truncated (...)"): the file and its fix."""
    return DamagedFileError(f"{path} {what}, so it cannot be read: {rebuild_hint(path)}")


def read_csv(path: str | os.PathLike, columns: Iterable[str] = (), **options):
    """A CSV table the workflow wrote, with at least one row and the `columns` its reader needs; a missing,
    empty, truncated or garbled file names itself and the rule that remakes it."""
    import pandas as pd

    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: build it with the workflow (snakemake {path})")
    try:
        table = pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise damaged(path, f"is damaged ({type(err).__name__}: {err})") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise damaged(path, f"lacks the columns {missing} (it has {list(table.columns)})")
    if table.empty:
        raise damaged(path, "holds no rows")
    required = table[list(columns)]
    if required.isna().any().any():
        raise damaged(path, f"has empty cells in {list(required.columns[required.isna().any()])}: truncated?")
    return table
