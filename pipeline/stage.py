"""What a rule script and `python -m pipeline.<module>` do around one stage function.

Both log to stderr and to a log file, and turn a failure into one line on stderr (`ERROR: ...`) with the
traceback in the log file only, so that Snakemake's console shows the error once. `stage_main` builds a
module's command line from its stage functions' keyword arguments and docstrings, so that a changed
signature needs no CLI edit:

- one option per argument, `--sheets-dir` for `sheets_dir`; its type from the annotation (`int`, `float`,
  `bool` as `--x/--no-x`, a list as several values, a dict or dataclass as one YAML mapping);
  an argument without a default is a required option;
- an argument whose default is `FromConfig("key")` (pipeline/config.py) is optional: it defaults to that
  key of the workflow config, read from `--configfile PATH` (config.yaml), `--preset NAME` and repeated
  `--set key.sub=value`, merged and validated as the Snakefile does (`pipeline.config.load`);
- a module with several stages takes the stage's name first: `python -m pipeline.report.tables make_table3`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import logging
import os
import signal
import subprocess
import sys
import traceback
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

from pipeline.config import ROOT, ConfigError, FromConfig, config_value, load, merge

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class _WithoutTraceback(logging.Formatter):
    """The stderr format while a log file is open: tracebacks go to the file only."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


def setup_logging(log_path: str | os.PathLike | None = None, append: bool = False) -> None:
    """Log to stderr and to `log_path` (anew, or appended to where several processes share it)."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_WithoutTraceback(_FORMAT) if log_path else logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [stderr]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = logging.FileHandler(log_path, mode="a" if append else "w")
        log_file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(log_file)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def call_stage(stage: Callable, kwargs: Mapping, log_path: str | os.PathLike | None = None) -> None:
    """Run `stage(**kwargs)`; a failure exits with `ERROR: ...` on stderr and its traceback in the log.

    Without a log file the traceback goes to stderr, before the error line.
    """
    try:
        _check_config_arguments(stage, kwargs)
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


def _check_config_arguments(stage: Callable, kwargs: Mapping) -> None:
    missing = [
        f"{name} ({param.default!r})"
        for name, param in inspect.signature(stage).parameters.items()
        if isinstance(param.default, FromConfig) and name not in kwargs
    ]
    if missing:
        raise TypeError(
            f"{stage.__name__} was not given {', '.join(missing)}: its rule passes each as a param of that "
            "name"
        )


def config_arguments(stage: Callable, config: Mapping) -> dict:
    """The arguments of `stage` that default to a config key (`FromConfig`), read from `config`."""
    return {
        name: config_value(config, param.default.key)
        for name, param in inspect.signature(stage).parameters.items()
        if isinstance(param.default, FromConfig)
    }


def slurm_stop_message(rule: str, wildcards: Mapping, job_id: str, reason: str, time_limit: str) -> str:
    """What a job's log says when SLURM stops it (SIGTERM): its rule, and for the time limit, the resource
    to raise. `reason` and `time_limit` are squeue's %r and %l of the job (TimeLimit and 1:00 when its
    time ran out, None after a scancel)."""
    job = f"rule {rule} {dict(wildcards)}: SLURM job {job_id}"
    rerun = "rerun the same command: finished jobs are kept, a training resumes after its last finished epoch"
    if reason == "TimeLimit":
        return (
            f"{job} reached its time limit ({time_limit}): raise the rule's `runtime` (minutes) in the "
            f"set-resources of your profile ({rule}: {{runtime: ...}}; a --set-resources {rule}:runtime=... "
            f"on the command line replaces the profile's whole set-resources), then {rerun}"
        )
    return f"{job} was stopped (scancel, preemption or its node going down; squeue reason: {reason}): {rerun}"


def _squeue_reason_and_limit(job_id: str) -> tuple[str, str]:
    """squeue's reason (%r) and time limit (%l) of a job, or ("unknown", "unknown") where squeue fails."""
    try:
        found = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%r %l"], capture_output=True, text=True, timeout=10
        )
        reason, time_limit = found.stdout.split()
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return "unknown", "unknown"
    return reason, time_limit


def log_slurm_stop(rule: str, wildcards: Mapping) -> None:
    """In a SLURM job, turn the SIGTERM that SLURM sends at the time limit (or on scancel) into a line of
    the rule's log that says why (slurm_stop_message), then exit as SIGTERM would (143). SLURM sends
    SIGKILL after its KillWait (30 s by default), so the handler asks squeue once and leaves."""
    job_id = os.environ["SLURM_JOB_ID"]

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # srun forwards a second SIGTERM: one line is enough
        message = slurm_stop_message(rule, wildcards, job_id, *_squeue_reason_and_limit(job_id))
        logging.getLogger(__name__).error(message)
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)


def run_stage(smk, stage: Callable, **paths) -> None:
    """Run `stage` in a Snakemake `script:` job, logging to the rule's log file: `paths` (the job's files
    and wildcards) and the rule's params, each the stage's keyword argument of the same name."""
    kwargs = {**dict(smk.params.items()), **paths}
    log_path = smk.log[0] if smk.log else None
    setup_logging(log_path)
    if "torch" in sys.modules:  # a stage that computes with torch uses the rule's threads, no more
        sys.modules["torch"].set_num_threads(max(int(smk.threads), 1))
    logger = logging.getLogger(stage.__module__)
    logger.info("rule %s, %d thread(s), wildcards %s", smk.rule, smk.threads, dict(smk.wildcards))
    if "SLURM_JOB_ID" in os.environ:
        log_slurm_stop(smk.rule, smk.wildcards)
    processes = int(smk.resources.get("gpu", 0) or 0)
    if processes > 1 and getattr(stage, "data_parallel", False) and "LOCAL_RANK" not in os.environ:
        from pipeline.train.distributed import relaunch

        setup_logging(log_path, append=True)  # rank 0 writes to the same log: both append
        call_stage(
            relaunch,
            {"stage_name": stage.__name__, "kwargs": kwargs, "processes": processes, "log_path": log_path},
            log_path,
        )
        return
    call_stage(stage, kwargs, log_path)


def stage_of_rule(rule: str) -> Callable:
    """The stage function rule `rule` runs: the function of the same name (verb_object) in pipeline/.

    Found by reading the sources, so that only the module that holds it is imported."""
    package = Path(__file__).resolve().parent
    holders = [
        path
        for path in sorted(package.rglob("*.py"))
        if any(
            isinstance(node, ast.FunctionDef) and node.name == rule
            for node in ast.parse(path.read_text()).body
        )
    ]
    if len(holders) != 1:
        raise LookupError(
            f"rule {rule}: {len(holders)} functions named {rule} in pipeline/ ({holders}): a rule runs the "
            "one stage function of its name"
        )
    module = ".".join(holders[0].relative_to(package.parent).with_suffix("").parts)
    return getattr(importlib.import_module(module), rule)


def _named(files) -> dict:
    return {name: value if isinstance(value, str) else list(value) for name, value in files.items()}


def run_rule(smk) -> None:
    """The job of a rule with the generic script (workflow/scripts/stage.py): run the stage function of the
    rule's name with the rule's named inputs, named outputs and params as keyword arguments of the same
    names, and the wildcards the function takes (read as its annotations say, `int` for a seed)."""
    stage = stage_of_rule(smk.rule)
    hints = _type_hints(stage)
    wildcards = {
        name: int(value) if int in _members(hints.get(name, str))[0] else value
        for name, value in smk.wildcards.items()
        if name in inspect.signature(stage).parameters
    }
    run_stage(smk, stage, **{**wildcards, **_named(smk.input), **_named(smk.output)})


# --- the command line --------------------------------------------------------------------------------
def _yaml_mapping(text: str) -> dict:
    value = yaml.safe_load(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{key: value}}', got {text!r}")
    return value


def _members(hint) -> tuple[list, bool]:
    """The non-None types of an annotation, and whether it allows None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = list(typing.get_args(hint))
    else:
        args = [hint]
    return [a for a in args if a is not type(None)], type(None) in args or hint is None


def _option(hint) -> dict:
    """argparse keywords (`type`, `nargs` or `action`) for one annotation."""
    members, _ = _members(hint)
    origins = [typing.get_origin(m) or m for m in members]
    for member, origin in zip(members, origins, strict=True):
        if origin in (list, tuple, Sequence):
            item = (typing.get_args(member) or (str,))[0]
            item = item if item in (int, float) else str
            return {"type": item, "nargs": "+"}
    if bool in members:
        return {"action": argparse.BooleanOptionalAction}
    for scalar in (int, float):
        if scalar in members:
            return {"type": scalar}
    if str in members or os.PathLike in origins or Path in members:
        return {"type": str if str in members else Path}
    if any(o in (dict, Mapping) for o in origins):
        return {"type": _yaml_mapping}
    for member in members:
        if dataclasses.is_dataclass(member):
            return {"type": lambda text, cls=member: cls(**_yaml_mapping(text))}
    return {"type": str}


def _describe(hint) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    for prefix in ("typing.", "pathlib.", "os.", "collections.abc."):
        text = text.replace(prefix, "")
    return text


def _type_hints(stage: Callable) -> dict:
    try:
        return typing.get_type_hints(stage)
    except Exception:  # an annotation that does not evaluate: every argument is then read as text
        return {}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config (the workflow's, merged and validated as the Snakefile does)")
    group.add_argument(
        "--configfile",
        dest="_configfile",
        default=str(ROOT / "config.yaml"),
        metavar="PATH",
        help="(default: the repository's, %(default)s)",
    )
    group.add_argument(
        "--preset", dest="_preset", metavar="NAME", help="smoke, quick or paper (default: the config file's)"
    )
    group.add_argument(
        "--set",
        dest="_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set train.epochs=3 --set 'model.conv_channels=[8, 16]'",
    )


def _add_stage_arguments(parser: argparse.ArgumentParser, stage: Callable) -> None:
    hints = _type_hints(stage)
    config_group = False
    for name, param in inspect.signature(stage).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if isinstance(param.default, FromConfig) and not config_group:
            config_group = True
            _add_config_options(parser)
        hint = hints.get(name, str)
        option = _option(hint)
        required = param.default is param.empty
        from_config = isinstance(param.default, FromConfig)
        described = _describe(hint) + (" (YAML mapping)" if option.get("type") is _yaml_mapping else "")
        help_text = described + ("" if required else f" (default: {param.default!r})")
        flag = "--" + name.replace("_", "-")
        kwargs = {"dest": name, "required": required, "help": help_text, **option}
        if "action" not in option:
            kwargs["metavar"] = name.upper()
        if not required:
            kwargs["default"] = argparse.SUPPRESS if from_config else param.default
        parser.add_argument(flag, **kwargs)
    parser.add_argument(
        "--log", dest="_log", metavar="PATH", help="also log to this file (a failure's traceback)"
    )


def _overrides(preset: str | None, assignments: list[str]) -> dict:
    overrides: dict = {} if preset is None else {"preset": preset}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise SystemExit(f"ERROR: --set {assignment!r}: write KEY=VALUE, e.g. --set train.epochs=3")
        # As Snakemake's --config: every scalar a string, which pipeline.config.coerce reads by the schema.
        value = yaml.load(text, Loader=yaml.BaseLoader) if text else None
        for part in reversed(key.split(".")):
            value = {part: value}
        overrides = merge(overrides, value)
    return overrides


def _stage_kwargs(stage: Callable, args: argparse.Namespace) -> dict:

    kwargs = {
        name: getattr(args, name) for name in inspect.signature(stage).parameters if hasattr(args, name)
    }
    if hasattr(args, "_configfile"):
        try:
            config = load(args._configfile, _overrides(args._preset, args._set))
        except (ConfigError, OSError) as err:
            raise SystemExit(f"ERROR: {err}") from None
        kwargs = {**config_arguments(stage, config), **kwargs}
    return kwargs


def _doc(stage: Callable) -> str:
    return inspect.cleandoc(stage.__doc__ or stage.__name__)


def stage_main(*stages: Callable, argv: Sequence[str] | None = None) -> None:
    """The command line of a stage module: `stage_main(fn)`, or `stage_main(fn_a, fn_b)` for sub-commands."""
    module = sys.modules.get(stages[0].__module__)
    name = module.__spec__.name if module and getattr(module, "__spec__", None) else stages[0].__module__
    if stages[0].__module__ == "__main__":
        # Call the functions of the importable module, so that there is one copy of its classes and state.
        importable = importlib.import_module(name)
        stages = tuple(getattr(importable, stage.__name__) for stage in stages)
    prog = f"python -m {name}"
    if len(stages) == 1:
        parser = argparse.ArgumentParser(
            prog=prog, description=_doc(stages[0]), formatter_class=argparse.RawDescriptionHelpFormatter
        )
        _add_stage_arguments(parser, stages[0])
        parser.set_defaults(_stage=stages[0])
    else:
        summary = (module.__doc__ or "").strip().split("\n\n")[0] if module else ""
        parser = argparse.ArgumentParser(
            prog=prog,
            description=summary + "\n\nOne stage per sub-command; `STAGE --help` lists its options.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        names = "{" + ",".join(stage.__name__ for stage in stages) + "}"
        commands = parser.add_subparsers(title="stages", metavar=names, required=True)
        for stage in stages:
            command = commands.add_parser(
                stage.__name__,
                help=_doc(stage).splitlines()[0],
                description=_doc(stage),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            _add_stage_arguments(command, stage)
            command.set_defaults(_stage=stage)
    args = parser.parse_args(argv)
    stage = args._stage
    kwargs = _stage_kwargs(stage, args)
    setup_logging(args._log)
    call_stage(stage, kwargs, args._log)
