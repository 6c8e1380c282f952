"""``ttt-tui eval``'s course once its command line is read: run the data set's files (this process's shard, a
batch array's ``--shard I/N``, or torchrun's rank), merge the shards' run logs into the answer, or follow it
all on a screen."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EXIT_INTERNAL, EXIT_OK, EXIT_SOME_FAILED, InputError
from ..run.settings import RunSettings


def merge_into(dirs, out: Path, plots: bool) -> int:
    """``--merge A B --out C``: the answer of eval folders written elsewhere (C may be new)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write to {out} ({e.strerror or e}); choose another --out") from None
    doc = write_evaluation(dirs, out, plots=plots)
    print(out)
    return EXIT_SOME_FAILED if doc["counts"]["failed"] or doc["counts"]["damaged"] else EXIT_OK


def write_evaluation(dirs, out: Path, plots: bool) -> dict:
    """Merge the eval folders ``dirs`` into ``out``: the files, and the answer on stderr."""
    from .aggregate import merge, render_text, write_eval

    doc = merge(dirs)
    paths = write_eval(out, doc, plots=plots)
    sys.stderr.write(render_text(doc))
    print(f"evaluation written to {out}/ ({', '.join(p.name for p in paths.values())})", file=sys.stderr)
    return doc


def evaluate(settings: RunSettings, files: list, out: Path, shard, dist, on_screen: bool, plots: bool) -> int:
    """Run ``files`` into ``out``: ``shard`` (index, count) of a batch array or None; ``dist``: torchrun's
    ranks (``runner.Distributed``); ``on_screen``: a terminal follows it. Returns the exit code."""
    from .inputs import record
    from .inputs import shard as split
    from .runner import run_shard

    if on_screen:
        return _on_screen(settings, files, out, plots)
    index, count = shard or (0, 1)
    settings = dist.start(settings)
    try:
        if dist.active:
            index, count = dist.rank, dist.world
        if not dist.active or dist.rank == 0:
            record(out, files)
        dist.barrier()
        result = run_shard(settings, split(files, index, count), out, len(files))
        dist.barrier()
        if (dist.active and dist.rank == 0) or (not dist.active and not shard):
            write_evaluation([out], out, plots=plots)
        elif shard:
            print(
                f"shard {index}/{count}: {len(result.finished)} run, {len(result.skipped)} done before, "
                f"{len(result.failed)} failed; then: ttt-tui eval --merge {out}",
                file=sys.stderr,
            )
        if not dist.active or dist.rank == 0:
            print(out)
    finally:
        dist.close()
    if result.signal_code is not None:
        return result.signal_code
    return EXIT_SOME_FAILED if result.failed else EXIT_OK


def _on_screen(settings: RunSettings, files, out: Path, plots: bool) -> int:
    """In a terminal: the files run in a thread while the screen follows the aggregate."""
    from ..tui.eval_view import EvalApp
    from ..tui.run import library_output_to, size_from_the_terminal
    from .aggregate import merge, render_text, write_eval
    from .inputs import record, shard
    from .runner import Stop, run_shard

    record(out, files)
    stop = Stop()
    merged = {}

    def work():
        result = run_shard(settings, shard(files, 0, 1), out, len(files), stop=stop)
        merged["doc"] = merge([out])
        write_eval(out, merged["doc"], plots=plots)
        return result

    app = EvalApp(out, run=work, stop=stop)
    size_from_the_terminal()
    with library_output_to(out / "library_output.log"):  # the per-file progress lines, and library output
        app.run()
    if app.error and app.result is None:
        print(f"ttt-tui: internal error in the evaluation: {app.error}", file=sys.stderr)
        return EXIT_INTERNAL
    result = app.result
    sys.stderr.write(render_text(merged.get("doc") or merge([out])))  # merged once, unless the screen left early
    print(out)
    if result is None or stop.code is not None:  # left before the end: the same command resumes
        print(f"ttt-tui: evaluation stopped; the same command resumes it ({out}/)", file=sys.stderr)
        return stop.code or 130
    return EXIT_SOME_FAILED if result.failed else EXIT_OK
