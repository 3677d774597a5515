"""What every rule script does around its one function call: log to the rule's log file, pin threads."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


def setup_logging(log_path: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_stage(smk, stage: Callable, **kwargs) -> None:
    """Run `stage(**kwargs)` in a Snakemake `script:` job; a failure is logged with its traceback."""
    setup_logging(smk.log[0] if smk.log else None)
    import torch

    torch.set_num_threads(max(int(smk.threads), 1))
    logger = logging.getLogger(stage.__module__)
    logger.info("rule %s, %d thread(s), wildcards %s", smk.rule, smk.threads, dict(smk.wildcards))
    try:
        stage(**kwargs)
    except Exception:
        logger.exception("%s failed", stage.__name__)
        raise
