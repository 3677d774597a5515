"""A failing stage prints its error line once while its log file keeps the traceback."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from pipeline.stage import run_stage


def failing(*, path: str) -> None:
    """A stage that fails the way a bad input does."""
    logging.getLogger(__name__).info("reading %s", path)
    raise ValueError(f"{path} is damaged: rebuild it")


def test_a_failure_prints_the_error_line_once_and_logs_the_traceback(tmp_path, capsys, restore_logging):
    log = tmp_path / "logs" / "rule" / "x.log"
    smk = SimpleNamespace(log=[str(log)], threads=1, rule="build_x", wildcards={})
    with pytest.raises(SystemExit) as exit:
        run_stage(smk, failing, path="results/data/x.h5")
    message = str(exit.value.code)
    assert message.startswith("ERROR: failing failed: ValueError: results/data/x.h5 is damaged: rebuild it")
    assert str(log) in message
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "is damaged" not in stderr  # SystemExit prints the message, once
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "ERROR: failing failed: ValueError" in text and "ValueError: results/data/x.h5 is damaged" in text
    assert "reading results/data/x.h5" in text


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level
