"""Running a data set: each file of this process's shard as an ordinary run (its own report folder under
``DIR/runs/``, its own run log), one model for all of them; a file whose run finished is not run again (a crash,
a preemption, a resumed job). The shard comes from ``--shard I/N`` (SLURM job arrays, any batch system) or from
torchrun's environment (``torch.distributed``: gloo on CPU, NCCL on GPUs, one GPU per rank; rank 0 merges)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InputError
from ..record.files import atomic
from ..report import REPORT_JSON
from ..run.settings import RunSettings
from .aggregate import FAILED_NAME, run_state
from .inputs import run_name


@dataclass
class ShardResult:
    finished: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # finished before (resumed)
    failed: list = field(default_factory=list)  # (index, input, reason)
    signal_code: int | None = None  # the exit code of the signal that stopped the shard


class Stop:
    """SIGINT/SIGTERM (or ``request``, from a screen that quits): the file being run stops at its next block and
    writes its report; no further file starts. ``code``: the documented exit code of the signal."""

    def __init__(self):
        self.code: int | None = None
        self.session = None

    def __call__(self, signum, frame) -> None:
        from ..run.session import SIGNAL_EXIT

        self.code = SIGNAL_EXIT.get(signum, 130)
        if self.session is not None:
            self.session.engine.stop(signal.Signals(signum).name)

    def request(self) -> None:
        self(signal.SIGINT, None)


def _fail(folder: Path, k: int, path: Path, reason: str, result: ShardResult) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic(folder / FAILED_NAME) as tmp:
        tmp.write_text(json.dumps({"index": k, "input": str(path), "reason": reason}) + "\n")
    result.failed.append((k, str(path), reason))
    print(f"ttt-tui: [{k}] {path}: skipped: {reason}", file=sys.stderr)


def run_shard(
    settings: RunSettings, items: list[tuple[int, Path]], out_dir: Path, total: int, stop: Stop | None = None
) -> ShardResult:
    """Run the files ``items`` ((index, path) of the data set) into ``out_dir/runs``; ``settings``: the run's
    (the command line's), the same for every file. ``stop``: given by a caller that runs this in a thread (a
    screen); otherwise SIGINT/SIGTERM stop it."""
    import threading

    from ..run.factory import make_backend
    from ..run.session import Session

    result = ShardResult()
    previous = {}
    if stop is None:
        stop = Stop()
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    backend = None
    try:
        for k, path in items:
            if stop.code is not None:
                break
            folder = out_dir / "runs" / run_name(k, path)
            if run_state(folder) == "finished":
                if not (folder / REPORT_JSON).is_file():  # killed between its log's end and its report
                    _report_from_log(folder, plots=not settings.no_plots)
                result.skipped.append(k)
                continue
            (folder / FAILED_NAME).unlink(missing_ok=True)
            a = replace(settings, input=str(path), out=str(folder), force=True, mic=False)
            try:
                if backend is None:  # one model for the whole shard (a Moshi checkpoint loads once)
                    backend = make_backend(a)
                session = Session(a, backend=backend)
            except InputError as e:
                _fail(folder, k, path, str(e), result)
                continue
            stop.session = session
            t0 = time.perf_counter()
            try:
                session.open_log()
                session.engine.start()
                session.engine.wait()
                session.write_report()
            finally:
                session.release()
                stop.session = None
            st = session.engine.status
            if st.state == "finished":
                result.finished.append(k)
                verdicts = " ".join(f"L{L} {_verdict(session, L)}" for L in session.store.layer_ids)
                print(
                    f"[{k + 1}/{total}] {path}: {st.audio_s:.1f} s in {time.perf_counter() - t0:.1f} s  {verdicts}",
                    file=sys.stderr,
                )
            elif st.state == "error":
                _fail(folder, k, path, st.error or "error", result)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    result.signal_code = stop.code
    return result


def _verdict(session, layer_id: int) -> str:
    from ..analysis.headline import layer_headline

    return layer_headline(session.store, layer_id, session.settings.window)["headline"]


def _report_from_log(folder: Path, plots: bool) -> None:
    """A finished run whose report is missing: written from its log, as `ttt-tui report` does."""
    from ..record.runlog import read_run
    from ..report import write_run_report

    write_run_report(read_run(folder), folder, plots=plots)


class Distributed:
    """torchrun's ranks (``torch.distributed``): which shard this process runs, a barrier, and rank 0 merges.
    Only when torchrun started us with more than one process; otherwise a single rank."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1
        self._dist = None

    def start(self, settings: RunSettings) -> RunSettings:
        """Join the process group; returns the settings with this rank's device (one GPU per rank)."""
        if not self.active:
            return settings
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        cuda = torch.cuda.is_available() and not (settings.torch_device or "").startswith("cpu")
        if cuda and not settings.torch_device:
            settings = replace(settings, torch_device=f"cuda:{self.local_rank}")
        if cuda:
            torch.cuda.set_device(torch.device(settings.torch_device))
        # a long data set: ranks wait for each other at the end, however unequal their shards' lengths
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=72))
        self._dist = dist
        return settings

    def barrier(self) -> None:
        if self._dist is not None:
            self._dist.barrier()

    def close(self) -> None:
        if self._dist is not None:
            self._dist.destroy_process_group()
            self._dist = None
