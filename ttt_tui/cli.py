"""The ``ttt-tui`` command. Exit codes: 0 done, 1 internal error, 2 bad usage or bad input, 3 some files of an
eval failed, 130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (the report of what was seen is written
first)."""

from __future__ import annotations

import argparse
import math
import os
import sys

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, MISSING_HINT, InputError, MissingInput
from .record.files import WriteError
from .run.settings import RunSettings


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        self.exit(EXIT_USAGE, f"ttt-tui: {message} (see ttt-tui --help)\n")


def build_parser(dataset: bool = False) -> argparse.ArgumentParser:
    """The run's options; ``dataset``: those of ``ttt-tui eval`` (many inputs, shards, merge), the same run
    options for every file."""
    if dataset:
        p = _Parser(
            prog="ttt-tui eval",
            description="Figure 5 over a data set: every file as its own run (DIR/runs/), then per layer the losses "
            "averaged across files by position with a 95% band, pooled verdicts and the files worst first "
            "(eval.json, eval.txt, eval_layer<L>.png). Resumable; torchrun shards the files across ranks.",
            epilog="Exit codes: 0 done, 3 some files failed (listed with the reason; the rest is evaluated), "
            "2 bad usage or input, 1 internal error, 130/143 on SIGINT/SIGTERM (finished files are kept).",
        )
        p.add_argument("inputs", nargs="*", help="audio files, folders (recursively) or manifests (one path a line)")
        p.add_argument("--shard", default=None, metavar="I/N", help="run the I-th of N parts (SLURM job arrays)")
        p.add_argument("--merge", nargs="+", default=None, metavar="DIR", help="merge eval folders (shards) into --out")
    else:
        p = _Parser(
            prog="ttt-tui",
            usage="ttt-tui [options] INPUT | --sample | --mic\n       ttt-tui COMMAND ... (see commands below)",
            description="Stream audio through a TTT model and follow, per TTT layer, the Figure-5 losses\n"
            "l0 (stream-start weights), lprev (before the update) and lafter (after it).\n\n" + commands_help(),
            epilog="Exit codes: 0 done, 1 internal error, 2 bad usage or input,\n"
            "130/143/129 on SIGINT/SIGTERM/SIGHUP (the report is written first).",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("input", nargs="?", help="audio file: WAV, FLAC, OGG/Vorbis, Opus, MP3; any rate, any channels")
    p.add_argument("--version", action="version", version=f"ttt-tui {__version__}")
    io = p.add_argument_group("input and output")
    io.add_argument("--sample", action="store_true", help="the bundled 24.7 s speech sample (shipped with the package)")
    io.add_argument("--mic", action="store_true", help="listen to the microphone instead of a file")
    io.add_argument("--device", default=None, help="microphone: input device NAME or INDEX (see --list-devices)")
    io.add_argument("--list-devices", action="store_true", help="list the audio input devices and exit")
    io.add_argument("--realtime", action="store_true", help="file: feed the audio at its own speed, like a live stream")
    io.add_argument("--duration", type=float, default=None, help="microphone: stop after SECONDS")
    io.add_argument("--out", default=None, help="report folder (default: ttt_tui_reports/<input>-<time>/)")
    io.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: progress on stderr, then the report (automatic when stdout is not a terminal)",
    )
    io.add_argument("--no-plots", action="store_true", help="skip the PNG plots in the report")
    io.add_argument(
        "--window",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="statistics over time: window length, live and in the report (default 30 s)",
    )
    io.add_argument(
        "--tensorboard",
        default=None,
        metavar="LOGDIR",
        help="also export per-layer scalars (per second of audio) to TensorBoard under LOGDIR/<report folder name> "
        "(needs tensorboardX)",
    )
    io.add_argument(
        "--force",
        action="store_true",
        help="--out may hold an earlier report: replace the files ttt-tui writes there (other files stay)",
    )
    ui = p.add_argument_group("dashboard")
    ui.add_argument(
        "--refresh", type=float, default=2.0, help="chart redraws per second (default 2; lower over slow SSH)"
    )
    ui.add_argument(
        "--marker",
        choices=("braille", "hd", "dot", "ascii"),
        default="braille",
        help="chart marker; 'ascii' for terminals or fonts that draw braille badly",
    )
    ui.add_argument("--exit-on-finish", action="store_true", help="quit when the audio ends (after the report)")
    io.add_argument("--block-seconds", type=float, default=1.0, help="audio per inference step (default 1.0)")
    m = p.add_argument_group("embedded default model")
    m.add_argument(
        "--lr-scale",
        type=float,
        default=1.0,
        help="inner step-size scale: 0 = no learning (lines overlap), -1 = degenerative (a sign bug), "
        "1e14 = exploding (float32 overflow) (default 1)",
    )
    m.add_argument("--mini-batch", type=int, default=None, help="inner mini-batch size (default: trained, 16)")
    p.add_argument("--torch-device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    k = p.add_argument_group(
        "Moshi-TTT checkpoints",
        'needs the moshi package: pip install --no-deps "moshi==0.2.13" && pip install -e ".[moshi]"',
    )
    k.add_argument(
        "--checkpoint",
        default=None,
        metavar="FOLDER",
        help="<run>/checkpoints/checkpoint_NNNNNN/consolidated/ (lora.safetensors or consolidated.safetensors)",
    )
    k.add_argument(
        "--hf-repo",
        default=None,
        help="base model repository (default: training_config.json's moshi_paths.hf_repo_id; "
        "HF_HUB_OFFLINE=1 uses the cache only)",
    )
    k.add_argument("--moshi-weight", default=None, metavar="FILE", help="local base Moshi weights (.safetensors)")
    k.add_argument("--mimi-weight", default=None, metavar="FILE", help="local Mimi weights (.safetensors)")
    k.add_argument("--config", default=None, metavar="FILE", help="Moshi LM config.json (default: the checkpoint's)")
    k.add_argument("--mimi-config", default=None, metavar="FILE", help="Mimi config JSON (default: Mimi's own)")
    k.add_argument(
        "--ttt-persist",
        action="store_true",
        help="carry the inner weights across frames (their 2-layer class resets them every step)",
    )
    k.add_argument("--gating-alpha", type=float, default=None, help="replace every gate alpha by X (tanh(clamp(X)))")
    k.add_argument(
        "--follow",
        choices=("inference", "training"),
        default=None,
        help="run the model as their inference script sets it up (default), or as training_config.json says "
        "(TTT RoPE, attention context, max_period); the report's model audit lists where the two differ",
    )
    k.add_argument("--greedy", action="store_true", help="decode with argmax (text and audio): deterministic")
    k.add_argument(
        "--teacher-forced",
        action="store_true",
        help="feed the recording's own Mimi codes as Moshi's audio stream, a mini-batch of frames at a time (no "
        "sampling, no pad rows), and record the outer loss (audio-token cross-entropy) per position",
    )
    k.add_argument("--seed", type=int, default=None, help="sampling seed (default 42299: the same audio, the same run)")
    return p


def _validate(args) -> None:
    if args.list_devices:
        return
    if sum(map(bool, (args.mic, args.input, args.sample))) > 1:
        raise InputError("give one input: an audio file, --sample or --mic")
    if args.sample:
        from .backends.embedded.default_model import ASSETS

        args.input = str(ASSETS / "sample.wav")
    if not args.mic and not args.input:
        raise InputError("no input: give an audio file, --sample (the bundled speech) or --mic")
    if args.duration is not None and not 0 < args.duration < math.inf:
        raise InputError("--duration must be a positive number of seconds")
    if not 0.1 <= args.refresh <= 30:
        raise InputError("--refresh must be within 0.1..30 Hz")
    if not 0 < args.block_seconds <= 60:  # also refuses nan
        raise InputError("--block-seconds must be within (0, 60]")
    _check_window(args.window)
    if args.tensorboard:
        _need_tensorboardx()


def screen_capable() -> bool:
    """A terminal that can show the dashboard: stdin and stdout are terminals, and TERM is not "dumb" (Emacs'
    shell, some CI consoles: no cursor movement; they get the headless progress lines instead)."""
    return sys.stdout.isatty() and sys.stdin.isatty() and os.environ.get("TERM", "") != "dumb"


def _check_window(window) -> None:
    if window is not None and not 2 <= window <= 3600:  # also refuses nan
        raise InputError("--window must be within 2..3600 seconds")


def _need_tensorboardx() -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise InputError("TensorBoard export needs tensorboardX: pip install tensorboardX") from None


def report_command(argv) -> int:
    """``ttt-tui report DIR``: (re)write a run's report from its log, also for a run that was killed."""
    p = _Parser(
        prog="ttt-tui report",
        description="(Re)write the report (txt, json, csv, png) of a run from its log (run.sqlite), also of a run "
        "that was killed; the report then says it was cut short and where.",
    )
    p.add_argument("folder", help="a report folder written by ttt-tui")
    p.add_argument("--out", default=None, metavar="DIR", help="write the report there (default: the run's folder)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS", help="window length (default: the run's)")
    a = p.parse_args(argv)
    _check_window(a.window)
    from pathlib import Path

    from .record.runlog import read_run, run_info
    from .report import write_run_report

    run = read_run(a.folder)
    out = Path(a.out) if a.out else run.folder
    if a.out:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot write the report to {out} ({e.strerror or e}); choose another --out") from None
    if not os.access(out, os.W_OK):  # read-only media, someone else's folder: say so before any work
        raise InputError(f"{out} is not writable (read-only media?); write the report elsewhere with --out DIR")
    info = run_info(run)
    paths = write_run_report(run, out, plots=not a.no_plots, window_s=a.window)
    how = {"killed": "was cut short", "running": "is still running (a snapshot)"}.get(info["state"], info["state"])
    files = ", ".join(p.name for p in paths.values())
    print(f"report of a run that {how} written to {out}/ ({files})", file=sys.stderr)
    for d in info.get("log_damage", ()):
        print(f"ttt-tui: damaged run log: {d['text']}", file=sys.stderr)
    print(out)
    return EXIT_OK


def open_command(argv) -> int:
    """``ttt-tui open DIR``: the dashboard on a saved run; a run still being written is followed live."""
    p = _Parser(
        prog="ttt-tui open",
        description="The dashboard on a saved run, from its log (run.sqlite); a run still being written (a headless "
        "job, say) is followed live. Reads only.",
    )
    p.add_argument("folder", help="a report folder written by ttt-tui")
    p.add_argument("--refresh", type=float, default=2.0, help="chart redraws per second (default 2)")
    p.add_argument("--marker", choices=("braille", "hd", "dot", "ascii"), default="braille")
    a = p.parse_args(argv)
    if not screen_capable():
        raise InputError(
            "open shows the dashboard and needs a terminal (not TERM=dumb); in a batch job use `ttt-tui report DIR`"
        )
    if not 0.1 <= a.refresh <= 30:
        raise InputError("--refresh must be within 0.1..30 Hz")
    from pathlib import Path

    from .evaluation.inputs import INPUTS_NAME
    from .tui.app import DashboardApp
    from .tui.opened import OpenedRun
    from .tui.run import size_from_the_terminal

    if (Path(a.folder) / INPUTS_NAME).is_file():  # an eval folder: its aggregate, followed while it grows
        from .tui.eval_view import EvalApp

        size_from_the_terminal()
        EvalApp(a.folder).run()
        return EXIT_OK
    run = OpenedRun(a.folder)
    size_from_the_terminal()
    try:
        DashboardApp(run, refresh_hz=a.refresh, marker=a.marker).run()
    finally:
        run.engine.stop("closed")
        run.engine.wait(2)
        run.reader.close()
    return EXIT_OK


def compare_command(argv) -> int:
    """``ttt-tui compare DIR_A DIR_B [...]``: runs side by side, from their logs; written to --out."""
    p = _Parser(
        prog="ttt-tui compare",
        description="The same layers of several runs side by side (e.g. two checkpoints of one training): per "
        "layer each run's verdict, violation rate, improvement and benefit, and the gap l0 - lafter and the per-step "
        "improvement overlaid. Writes compare.txt, compare.json and compare_layer<L>.png.",
    )
    p.add_argument("folders", nargs="+", help="report folders written by ttt-tui (two or more)")
    p.add_argument("--out", default=None, help="where to write (default: ttt_tui_reports/compare-<time>-<hex>/)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--headless", action="store_true", help="no screen, only the files (also when stdout is not a terminal)"
    )
    a = p.parse_args(argv)
    if len(a.folders) < 2:
        raise InputError("compare needs two or more run folders")
    from pathlib import Path

    from .record.files import default_out_dir
    from .report.compare import compare_runs, render_text, write_compare

    cmp = compare_runs(a.folders)
    if not cmp["common_layers"]:
        raise InputError("these runs have no TTT layer in common: nothing to compare")
    out = Path(a.out) if a.out else default_out_dir("compare")
    paths = write_compare(out, cmp, plots=not a.no_plots)
    if not a.headless and screen_capable():
        from .tui.compare_view import CompareApp
        from .tui.run import size_from_the_terminal

        size_from_the_terminal()
        CompareApp(cmp, out).run()
    sys.stderr.write(render_text(cmp))
    print(f"comparison written to {out}/ ({', '.join(p.name for p in paths.values())})", file=sys.stderr)
    print(out)
    return EXIT_OK


def tensorboard_command(argv) -> int:
    """``ttt-tui tensorboard RUN [...] --logdir DIR``: saved runs into TensorBoard."""
    p = _Parser(
        prog="ttt-tui tensorboard",
        description="Export saved runs (their run logs) to TensorBoard: per layer and per second of audio, l0, "
        "lprev, lafter, improvement, benefit and violation rate. Then: tensorboard --logdir DIR",
    )
    p.add_argument("folders", nargs="+", help="report folders written by ttt-tui")
    p.add_argument(
        "--logdir", required=True, help="TensorBoard's log folder; each run goes to LOGDIR/<its folder name>"
    )
    a = p.parse_args(argv)
    _need_tensorboardx()
    from .record.runlog import read_run
    from .report.tensorboard import export

    for f in a.folders:
        run = read_run(f)
        folder = export(run.store, a.logdir, run.folder.name)
        print(f"{run.folder} -> {folder}", file=sys.stderr)
    print(a.logdir)
    return EXIT_OK


def eval_command(argv) -> int:
    """``ttt-tui eval INPUTS... --out DIR``: a data set, resumable, sharded (``--shard``, torchrun), merged
    (``evaluation.orchestrate``); here only the command line."""
    from pathlib import Path

    from .evaluation.inputs import expand, parse_shard
    from .evaluation.orchestrate import evaluate, merge_into
    from .evaluation.runner import Distributed
    from .record.files import default_out_dir

    a = build_parser(dataset=True).parse_args(argv)
    if a.merge:
        return merge_into(a.merge, Path(a.out or a.merge[0]), plots=not a.no_plots)
    if a.mic or a.sample or a.list_devices:
        raise InputError("eval runs audio files (give files, folders or a manifest), not --mic/--sample")
    files = expand(a.inputs)
    dist = Distributed()
    if (a.shard or dist.active) and not a.out:
        raise InputError("a sharded eval needs --out DIR, the same folder for every shard")
    if a.shard and dist.active:
        raise InputError("--shard is for batch arrays; under torchrun the ranks are the shards")
    a.input = str(files[0])
    _validate(a)  # the run options, once for all files
    on_screen = not (a.headless or a.shard or dist.active) and screen_capable()
    return evaluate(
        RunSettings.from_args(a),
        files,
        Path(a.out) if a.out else default_out_dir("eval"),
        shard=parse_shard(a.shard) if a.shard else None,
        dist=dist,
        on_screen=on_screen,
        plots=not a.no_plots,
    )


# name: (function, arguments, what it does in one line): `ttt-tui --help` lists them
SUBCOMMANDS = {
    "open": (open_command, "DIR", "the dashboard on a saved run (a run being written: live)"),
    "report": (report_command, "DIR [--out D]", "(re)write a run's report from its log, also of a killed run"),
    "compare": (compare_command, "DIR DIR...", "the same layers of several runs side by side"),
    "eval": (eval_command, "INPUTS... --out DIR", "Figure 5 over a data set (files, folders, lists)"),
    "tensorboard": (tensorboard_command, "DIR... --logdir L", "saved runs as TensorBoard scalars"),
}


def commands_help() -> str:
    """The commands, one line each, for the top-level help."""
    rows = [(f"{name} {args}", what) for name, (_, args, what) in SUBCOMMANDS.items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"  {usage:<{width}}  {what}" for usage, what in rows]
    return "commands (ttt-tui COMMAND --help for each):\n" + "\n".join(lines)


def _unknown_command(word: str) -> str | None:
    """A first word that is no command and no existing file, yet reads like a mistyped command (close to one,
    and no path or file name), gets told so: not "unrecognized arguments" about the folder after it."""
    import difflib

    if word.startswith("-") or os.path.exists(word) or "/" in word or "." in word:
        return None
    close = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.6)
    return f"unknown command '{word}' (did you mean '{close[0]}'?)" if close else None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS and not os.path.exists(argv[0]):  # a file named "report" stays an input
        return _guarded(SUBCOMMANDS[argv[0]][0], argv[1:])
    unknown = _unknown_command(argv[0]) if argv else None
    if unknown:
        print(f"ttt-tui: {unknown}", file=sys.stderr)
        return EXIT_USAGE
    return _guarded(_run, build_parser().parse_args(argv))


def _guarded(command, arg) -> int:
    """Every command's errors as one line and a documented exit code, never a traceback."""
    try:
        return command(arg)
    except InputError as e:
        print(f"ttt-tui: {e}", file=sys.stderr)
        return EXIT_USAGE
    except WriteError as e:  # a full disk: the file and the folder named, the run log kept
        print(f"ttt-tui: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one line, never a traceback
        print(f"ttt-tui: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL


def _run(args) -> int:
    """A run (or --list-devices): headless, or the dashboard in a terminal."""
    _validate(args)
    if args.list_devices:
        from .sources.mic import list_devices

        print(list_devices())
        return 0
    from .run.settings import RunSettings

    settings = RunSettings.from_args(args)
    if args.headless or not screen_capable():
        from .run.session import Session, run_headless

        try:
            session = Session(settings)
        except MissingInput as e:  # a single run: say what to give instead (a data set lists the file as failed)
            raise InputError(f"{e}{MISSING_HINT}") from None
        return run_headless(session)
    from .tui.run import run_dashboard

    return run_dashboard(settings, refresh=args.refresh, marker=args.marker, exit_on_finish=args.exit_on_finish)


def console() -> None:
    """The ``ttt-tui`` console script: ``main``, then leave without interpreter teardown. Everything of the run
    is written and closed by then; what is left is the teardown of native thread pools (torch, OpenMP), which
    aborted the process now and then after the report was written ("terminate called without an active
    exception", exit 134), the same abort the inference child already avoids this way."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed terminal or pipe: nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
