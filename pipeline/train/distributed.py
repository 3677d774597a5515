"""Data-parallel training with torch.distributed: one process per GPU of a job, launched by torchrun.

A training stage (`train_model`, `train_judge`) whose job holds more than one GPU (the rule's `gpu`
resource, e.g. `--set-resources train_model:gpu=4` or the slurm-multigpu profile) starts itself again under
torchrun, one process (rank) per GPU (`relaunch`, called by pipeline.stage.run_stage). Each rank trains on
its shard of every global batch, and the ranks average their gradients before each optimiser step:

- `train.batch_size` stays the global batch; rank r takes rows r*b .. (r+1)*b - 1 of each global batch
  (b = batch_size / world size) of the epoch's order, which every rank draws from the same seed;
- each rank's loss is the mean over its b clips, so the average of the ranks' gradients is the gradient of
  the global batch's mean loss, and a model whose loss is a mean of per-clip terms takes the steps of one
  process at that batch, to float rounding (tests/test_distributed.py);
- rank 0 alone writes the checkpoint, metrics, logs and the model; every rank resumes from the checkpoint.

The gradients are averaged after the backward pass (`average_gradients`, one flat all-reduce), not by
DistributedDataParallel's hooks: the losses call model methods beyond `forward` (S3VAE.loss) and MoCoGAN
steps two players on disjoint parameters per batch, which DDP's forward-bound bookkeeping does not follow.
On a GPU node the all-reduce of a paper-size S3VAE's gradients is a few milliseconds of NVLink.

What couples the clips of a batch sees the rank's b clips, not the global batch: BatchNorm statistics
(on CUDA the trunks' BatchNorm layers become SyncBatchNorm, whose statistics are global; gloo on CPU has no
SyncBatchNorm, so there each rank normalises by its shard) and the minibatch estimators of S3VAE's L_MI and
L_SCC's negatives. Each rank draws its own sampling noise (seeded by seed, epoch and rank).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def data_parallel(stage):
    """Mark a training stage that `pipeline.stage.run_stage` may start under torchrun (`relaunch`)."""
    stage.data_parallel = True
    return stage


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place among the ranks, from torchrun's environment (one process: rank 0 of 1)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def rank_device(device: str) -> str:
    """The device this rank trains on, joining the process group first when there are several ranks: a
    GPU per rank (NCCL), or the CPU (gloo)."""
    w = world()
    if w.size == 1:
        return device
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(w.local_rank)
        return f"cuda:{w.local_rank}"
    return device


def prepare_model(model: nn.Module, device: str) -> nn.Module:
    """BatchNorm with statistics over the global batch where the backend has it (CUDA)."""
    if world().size > 1 and device.startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def all_sum(value: Tensor) -> Tensor:
    """`value` summed over the ranks (itself for one rank)."""
    if world().size > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks, with one all-reduce of all of them."""
    size = world().size
    if size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def check_batch(batch_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    size = world().size
    if batch_size % size:
        raise ValueError(
            f"a batch of {batch_size} clips does not split over {size} processes: set the batch_size of this "
            f"stage's config section to a multiple of {size} (it is the global batch)"
        )


def relaunch(stage_name: str, kwargs: dict, processes: int, log_path: str | None) -> None:
    """Run stage `stage_name` with `kwargs` in `processes` ranks under torchrun, and wait for them."""
    with tempfile.TemporaryDirectory(prefix="seqdis-ddp-") as folder:
        arguments = Path(folder) / "stage.json"
        arguments.write_text(json.dumps({"stage": stage_name, "kwargs": kwargs, "log": log_path}))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "pipeline.train.distributed",
            str(arguments),
        ]
        logger.info("%s: %d processes under torchrun", stage_name, processes)
        finished = subprocess.run(command, check=False)
    if finished.returncode:
        raise RuntimeError(
            f"{stage_name} failed in one of its {processes} processes (exit {finished.returncode}): the "
            f"failing rank's error is in {log_path or 'its stderr'} (rank 0) or beside it (.rank1, ...)"
        )


def _die_with_the_launcher() -> None:
    """Ask Linux to kill this rank when its torchrun agent dies. torchrun starts each rank in a session of
    its own, so a job cancelled with SIGKILL (which the agent cannot pass on) would leave the ranks
    training, and writing checkpoints, behind it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the agent died before the request was made
        os._exit(1)


def _run_rank(arguments: Path) -> None:
    """One rank of `relaunch`: rank 0 logs to the job's log, the others beside it (`LOG.rank{r}`)."""
    from pipeline.stage import call_stage, setup_logging, stage_of_rule

    _die_with_the_launcher()
    spec = json.loads(arguments.read_text())
    w = world()
    log = spec["log"]
    if w.main:
        setup_logging(log, append=True)  # after the launcher's lines, in the job's log
    else:
        setup_logging(f"{log}.rank{w.rank}" if log else None)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", 1))))
    try:
        call_stage(stage_of_rule(spec["stage"]), spec["kwargs"], log)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    _run_rank(Path(sys.argv[1]))
