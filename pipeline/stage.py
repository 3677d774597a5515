"""What a rule script does around one stage function: log to stderr and the rule's log file, pin threads.

A failure becomes one line on stderr (`ERROR: ...`) with the traceback in the log file only, so that
Snakemake's console shows the error once.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class _WithoutTraceback(logging.Formatter):
    """The stderr format while a log file is open: tracebacks go to the file only."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


def setup_logging(log_path: str | os.PathLike | None = None) -> None:
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_WithoutTraceback(_FORMAT) if log_path else logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [stderr]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = logging.FileHandler(log_path, mode="w")
        log_file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(log_file)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def call_stage(stage: Callable, kwargs: Mapping, log_path: str | os.PathLike | None = None) -> None:
    """Run `stage(**kwargs)`; a failure exits with `ERROR: ...` on stderr and its traceback in the log.

    Without a log file the traceback goes to stderr, before the error line.
    """
    try:
        stage(**kwargs)
    except Exception as err:
        message = f"{stage.__name__} failed: {type(err).__name__}: {err}"
        logger = logging.getLogger(stage.__module__)
        record = logger.makeRecord(logger.name, logging.ERROR, "", 0, message, (), sys.exc_info())
        message = f"ERROR: {message}"
        files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        for handler in files:
            handler.handle(record)
        if files:
            message += f"\n(traceback in {log_path or files[0].baseFilename})"
        else:
            traceback.print_exc(file=sys.stderr)
        raise SystemExit(message) from None


def run_stage(smk, stage: Callable, **kwargs) -> None:
    """Run `stage(**kwargs)` in a Snakemake `script:` job, logging to the rule's log file."""
    log_path = smk.log[0] if smk.log else None
    setup_logging(log_path)
    import torch

    torch.set_num_threads(max(int(smk.threads), 1))
    logger = logging.getLogger(stage.__module__)
    logger.info("rule %s, %d thread(s), wildcards %s", smk.rule, smk.threads, dict(smk.wildcards))
    call_stage(stage, kwargs, log_path)
