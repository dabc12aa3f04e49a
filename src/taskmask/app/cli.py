"""The ``taskmask`` command line: ``train``, ``evaluate``, ``predict``, ``export``, ``compare``,
``demo``.

An adapter over the Python API (`taskmask.app.runs`, `taskmask.predict`) with no training logic of
its own; what a run directory holds is described in `taskmask.app.runs`. Results (metrics
tables, the compare summary, predictions to ``--out -``) go to stdout; diagnostics (the
training labels' coverage, a line per epoch or a bar, what was written, warnings, errors) go
to stderr through the ``taskmask`` logger: ``-q`` keeps warnings and errors only, ``-v`` adds
debug lines. Exit codes: `EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from taskmask._version import __version__
from taskmask._world import is_main
from taskmask.app._console import describe_error, format_metrics, log_to_stderr
from taskmask.app._interrupts import exit_code, interrupted_message, interruptible
from taskmask.app.config import RunConfig, load_config
from taskmask.app.run_files import (
    check_writable_file,
    id_columns,
    open_run,
    predictions_table,
    read_for_model,
    table_writer,
    write_table,
)
from taskmask.app.run_report import metrics_document
from taskmask.app.runs import (
    checkpoint_dir,
    left_out_report,
    part_metrics,
    resumed_config,
    run_lock,
    train_run,
)
from taskmask.data.tables import Dataset
from taskmask.errors import TaskmaskError
from taskmask.persistence import load_model
from taskmask.predict import predict, predictions_frame

EXIT_BAD_INPUT = 2
EXIT_CODES = {
    0: "success",
    1: "an unexpected error (a traceback follows), or stdout closed early (| head)",
    2: "bad input: usage, config, files, columns or labels (the message names which)",
}

logger = logging.getLogger("taskmask")


def _check_free(out: Path, *, overwrite: bool) -> None:
    """Refuse to replace a non-empty ``out`` unless ``--overwrite`` was given, and a file
    always."""
    if out.exists() and not out.is_dir():
        raise TaskmaskError(f"{out}: is a file, not a directory; refusing to replace it")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise TaskmaskError(f"{out}: already exists; pass --overwrite to replace it")


def _train_target(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The config and run directory of ``train``: a new run, or the one ``--resume`` names."""
    if args.resume is not None:
        out = Path(args.resume)
        if args.out is not None and Path(args.out).resolve() != out.resolve():
            raise TaskmaskError(f"--resume {out} continues {out}; leave out --out {args.out}")
        if args.config is None:
            return resumed_config(out, overrides=args.set), out
        if not checkpoint_dir(out).exists():  # nothing to resume: a new run, as without --resume
            _check_free(out, overwrite=args.overwrite)
        return load_config(args.config, overrides=args.set), out
    if args.config is None or args.out is None:
        raise TaskmaskError("give --config CONFIG and --out RUN_DIR, or --resume RUN_DIR")
    config, out = load_config(args.config, overrides=args.set), Path(args.out)
    _check_free(out, overwrite=args.overwrite)
    if checkpoint_dir(out).exists() and not args.overwrite:
        raise TaskmaskError(
            f"{checkpoint_dir(out)}: holds the checkpoint of an interrupted run; pass "
            f"--resume {out} to continue it, or --overwrite to start over"
        )
    return config, out


def _cmd_train(args: argparse.Namespace) -> int:
    """Train under the lock of the run directory; SIGINT / SIGTERM end it as
    `taskmask.app._interrupts` describes."""
    target = args.resume if args.resume is not None else args.out
    if target is None:
        raise TaskmaskError("give --config CONFIG and --out RUN_DIR, or --resume RUN_DIR")
    try:
        with interruptible(), run_lock(Path(target)):
            return _train(args)
    except KeyboardInterrupt as stop:
        if is_main():
            print(f"taskmask train: {interrupted_message(Path(target))}", file=sys.stderr)
        return exit_code(stop)


def _train(args: argparse.Namespace) -> int:
    config, out = _train_target(args)
    progress = False if args.quiet else config.training.progress
    run = train_run(
        config,
        out,
        progress=progress,
        report=logger.info,
        checkpoints=True,
        resume=args.resume is not None,
        command=args.command_line,
    )
    if is_main():
        for part, metrics in run.metrics.items():
            print(f"{part} metrics\n{format_metrics(metrics)}\n", file=sys.stdout)
        logger.info("wrote %s", out)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    config, model = open_run(args.run_dir, verify=args.verify)
    part = read_for_model(config, model, Path(args.data), with_labels=True)
    _report_left_out(part)
    metrics = part_metrics(model, part)
    if args.json:
        print(json.dumps(metrics_document({"data": metrics}), indent=2), file=sys.stdout)
    else:
        print(format_metrics(metrics), file=sys.stdout)
    return 0


def _report_left_out(part: Dataset) -> None:
    if part.left_out:
        logger.warning("%s: %s", part.path, left_out_report(part))


def _output_path(args: argparse.Namespace) -> Path:
    """``--out`` (or the deprecated ``--output``), checked before any work is done."""
    if args.out is not None and args.output is not None:
        raise TaskmaskError("give --out FILE only (--output is its deprecated spelling)")
    if args.output is not None:
        logger.warning("--output is deprecated and will be removed; use --out")
    out = args.out if args.out is not None else args.output
    if out is None:
        raise TaskmaskError("give --out FILE (.csv, .parquet, .json), or --out - for stdout")
    if str(out) != "-":
        check_writable_file(Path(out), what="--out")
        table_writer(out)
    return Path(out)


def _cmd_predict(args: argparse.Namespace) -> int:
    out = _output_path(args)
    config, model = open_run(args.run_dir, verify=args.verify)
    keep = id_columns(config, args.keep_columns)
    part = read_for_model(config, model, Path(args.data), with_labels=False, keep=keep)
    _report_left_out(part)
    frame = predictions_table(part, predictions_frame(predict(model, part.inputs)))
    if str(out) == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        write_table(frame, out)
    where = "stdout" if str(out) == "-" else out
    logger.info("wrote %d rows x %d columns to %s", len(frame), frame.shape[1], where)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from taskmask.app.compare import load_compare, run_comparison, summarize, to_markdown

    config = load_compare(args.config)
    out = Path(args.out)
    _check_free(out, overwrite=args.overwrite)
    progress = False if args.quiet else None
    results = run_comparison(config, out, progress=progress, report=logger.info)
    print(to_markdown(summarize(results)), file=sys.stdout, end="")
    logger.info("wrote %s", out)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from taskmask.app.tune import run_tune, study_summary

    result = run_tune(args.config, args.out, n_trials=args.n_trials, report=print)
    print(study_summary(result), file=sys.stdout)
    print(f"wrote {args.out}", file=sys.stdout)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from taskmask.app import demo

    progress = not args.quiet and sys.stderr.isatty()
    results = demo.run(Path(args.out), epochs=args.epochs, seed=args.seed, progress=progress)
    print(demo.format_table(results), file=sys.stdout)
    logger.info("wrote %s", args.out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from taskmask.app.export import export_model

    model = load_model(args.run_dir)
    suffix = ".onnx" if args.format == "onnx" else ".torchscript"
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / f"model{suffix}"
    export_model(model, out, format=args.format)
    logger.info("wrote %s", out)
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _no_verify_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="load model.safetensors even if its SHA-256 differs from model.json's (weights "
        "edited on purpose); tensor shapes are checked still",
    )


def _common() -> argparse.ArgumentParser:
    """The options every command takes: how much goes to stderr."""
    common = argparse.ArgumentParser(add_help=False)
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar; warnings and errors only"
    )
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug lines too")
    return common


def _epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskmask",
        description="Multi-task learning with missing labels. Results go to stdout, "
        "diagnostics (coverage, progress, what was written) to stderr.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taskmask {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]
    train = commands.add_parser(
        "train",
        parents=common,
        help="train a model from a YAML run config",
        description="Train a model. While it trains, a checkpoint of every epoch is kept in "
        "RUN_DIR.checkpoint (removed once RUN_DIR is written); --resume RUN_DIR continues an "
        "interrupted run from it. Under torchrun (torchrun --nproc_per_node=N -m taskmask "
        "train ...) the processes train together and rank 0 writes. Without a terminal, "
        "a line per epoch (training.log_every) goes to stderr instead of a bar.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", type=Path, help="the run config (YAML)")
    train.add_argument("--out", type=Path, help="the run directory to write")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config setting, e.g. --set training.lr=0.01 or --set "
        "tasks.toxic.weight=2 (VALUE is YAML; repeatable; validated as the file is)",
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the interrupted run RUN_DIR from its last checkpoint, with the config "
        "it started with; with --config, start RUN_DIR if nothing is left to resume (one "
        "command for torchrun --max_restarts)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    train.set_defaults(handler=_cmd_train)
    evaluate_ = commands.add_parser(
        "evaluate", parents=common, help="per-task metrics of a run's model"
    )
    evaluate_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate_.add_argument("--data", required=True, type=Path, help="CSV, Parquet or NPZ file")
    evaluate_.add_argument("--json", action="store_true", help="all metrics as JSON on stdout")
    _no_verify_flag(evaluate_)
    evaluate_.set_defaults(handler=_cmd_evaluate)
    predict_ = commands.add_parser("predict", parents=common, help="write predictions")
    predict_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    predict_.add_argument("--data", required=True, type=Path, help="CSV, Parquet or NPZ file")
    predict_.add_argument(
        "--out",
        help="the file to write, in the format its suffix names (.csv, .parquet, .json: "
        "one object per row); - writes CSV to stdout",
    )
    predict_.add_argument("--output", help=argparse.SUPPRESS)  # deprecated spelling of --out
    predict_.add_argument(
        "--keep-columns",
        action="append",
        default=[],
        metavar="NAMES",
        help="columns of --data copied first into the predictions (repeat or a comma list); "
        "added to the config's data.id_columns",
    )
    _no_verify_flag(predict_)
    predict_.set_defaults(handler=_cmd_predict)
    compare = commands.add_parser(
        "compare", parents=common, help="several configs side by side over seeds"
    )
    compare.add_argument("--config", required=True, type=Path, help="the compare file (YAML)")
    compare.add_argument("--out", required=True, type=Path, help="the directory to write")
    compare.add_argument("--overwrite", action="store_true", help="replace an existing dir")
    compare.set_defaults(handler=_cmd_compare)
    tune = commands.add_parser(
        "tune",
        parents=common,
        help="hyperparameter search over a run config's search block (Optuna)",
        description="Search the fields that the config's search block names, judged on "
        "validation data only. The study is kept in OUT/study.db: running again on OUT "
        "resumes it. Writes OUT/best.yaml, OUT/trials.csv and OUT/tune.png (docs/tune.md).",
    )
    tune.add_argument("--config", required=True, type=Path, help="a run config with search:")
    tune.add_argument("--out", required=True, type=Path, help="the study directory")
    tune.add_argument(
        "--n-trials", type=_positive_int, default=None, help="trials in all (default: search)"
    )
    tune.set_defaults(handler=_cmd_tune)
    export = commands.add_parser(
        "export",
        parents=common,
        help="a run's model as ONNX or TorchScript",
        description="Export a run's model: input 'input' (N, *input_shape) raw features, one "
        "output per task (probabilities; values for regression), thresholds and label names "
        "in the metadata under 'taskmask'. ONNX needs pip install \"taskmask[onnx]\".",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument(
        "--out", type=Path, help="the file to write (default RUN_DIR/model.onnx or .torchscript)"
    )
    export.set_defaults(handler=_cmd_export)
    demo = commands.add_parser(
        "demo", parents=common, help="seed 000 reproduced: three losses side by side"
    )
    demo.add_argument("--out", required=True, type=Path, help="the directory to write")
    demo.add_argument("--epochs", type=_positive_int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2 for bad input, with a message on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    args.command_line = shlex.join(["taskmask", *(sys.argv[1:] if argv is None else argv)])
    try:
        with log_to_stderr(quiet=args.quiet, verbose=args.verbose):
            code: int = args.handler(args)
    except BrokenPipeError:
        raise
    except (TaskmaskError, ValidationError, yaml.YAMLError, OSError) as error:
        print(f"taskmask {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:  # train reports its own (what it kept, how to resume)
        print(f"taskmask {args.command}: interrupted", file=sys.stderr)
        return exit_code(stop)
    return code


def run() -> None:
    """The console-script entry point; a closed pipe (``taskmask evaluate ... | head``) ends
    it quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
