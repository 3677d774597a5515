"""benchmarks/gpu_paper_sprites.{sh,py} and the wheels it carries to the device: the pieces that need no run
of the workflow (the TINY=1 run of the script is in test_workflow.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    """benchmarks/gpu_paper_sprites.py as a module (benchmarks/ is no package: its scripts import their
    neighbours from their own folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO / "benchmarks"))
        import gpu_paper_sprites

    return gpu_paper_sprites


def test_the_wheel_list_pins_one_version_of_each_package():
    pins = [
        line.split("#")[0].strip()
        for line in (REPO / "benchmarks" / "gpu_wheels.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][A-Za-z0-9.]*", pin) for pin in pins), pins
    names = [re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower() for pin in pins]  # PEP 503 names
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert {"snakemake", "jsonschema"} <= set(names)


def training(script, started: float, ends: list[float]):
    return script.Training(started, [(end, 100.0) for end in ends])


def test_an_epoch_is_timed_after_the_first_and_the_set_up_is_the_rest(script):
    run = training(script, 0.0, [10.0, 12.0, 14.5, 16.5])  # epochs of 2, 2.5 and 2 s after the first
    assert run.epoch_s == 2.0 and run.setup_s == 8.0


def test_the_plan_takes_the_way_that_fits_the_most_epochs(script):
    alone = {"a": training(script, 0.0, [5.0, 6.0, 7.0]), "b": training(script, 0.0, [6.0, 8.0, 10.0])}
    one = script.one_at_a_time(alone)  # set-up 4 + 4 s, then 1 + 2 s an epoch of both rows
    assert (one.setup_s, one.epoch_s) == (8.0, 3.0)
    two = script.side_by_side(alone, {"a": 1.5, "b": 2.5})  # set-up 4 s, then 2.5 s an epoch
    assert (two.setup_s, two.epoch_s) == (4.0, 2.5)
    assert script.choose([one, two], budget_s=100.0, max_epochs=300) == (two, 38)  # (100 - 4) / 2.5
    assert script.choose([one, two], budget_s=100.0, max_epochs=20) == (two, 20)  # a tie: the quicker
    assert script.choose([one], budget_s=5.0, max_epochs=300) == (one, 1)  # at least one epoch


def test_side_by_side_epochs_count_only_while_every_row_trains(script):
    fast = training(script, 0.0, [3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # finishes at 8 s
    slow = training(script, 0.0, [5.0, 7.5, 10.0])  # warm from 5 s on
    assert script.side_by_side_epoch_s({"fast": fast, "slow": slow}) == {"fast": 1.0, "slow": 2.5}
    assert script.side_by_side_epoch_s({"fast": fast, "slow": training(script, 0.0, [7.5, 10.0])}) is None
