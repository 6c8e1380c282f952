"""The engine with models that misbehave: NaN losses, an exception mid-run; pause/resume/stop."""

import threading

import numpy as np
import pytest

from ttt_tui.analysis.diagnosis import diagnose
from ttt_tui.backends.base import Backend
from ttt_tui.report import write_report
from ttt_tui.run.engine import Engine


class ListSource:
    def __init__(self, n_blocks, size=1000, gate: threading.Event | None = None):
        self.n_blocks, self.size, self.gate = n_blocks, size, gate

    def blocks(self):
        for _ in range(self.n_blocks):
            if self.gate is not None:
                self.gate.wait(5)
            yield np.zeros(self.size, np.float32)

    def describe(self):
        return {"input": "test"}


class FakeBackend(Backend):
    """10 tokens per block; losses from ``make(position) -> [n, 3]``; raises at block ``fail_at``."""

    name, sample_rate, frame_rate, device, min_audio_s = "fake", 1000, 10.0, "cpu", 0.0

    def __init__(self, make, fail_at=None):
        self.make, self.fail_at, self.pos, self.blocks, self.pending = make, fail_at, 0, 0, []

    @property
    def layer_ids(self):
        return [0, 1]

    def reset(self):
        self.pos = self.blocks = 0

    def process(self, samples):
        if self.fail_at is not None and self.blocks == self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.blocks += 1
        self.pending.append(self.make(np.arange(self.pos, self.pos + 10)))
        self.pos += 10
        return 10

    def take_losses(self):
        if not self.pending:
            return {}
        block = np.concatenate(self.pending)
        self.pending = []
        return {0: block, 1: block * 2}


def healthy(pos):
    return np.stack([np.full(len(pos), 1.0), 0.6 - 0.1 * pos / 1000, 0.5 - 0.1 * pos / 1000], 1)


def test_nan_model_is_exploding_and_reported(tmp_path):
    def nan_after_50(pos):
        x = healthy(pos)
        x[pos >= 50] = np.nan
        return x

    eng = Engine(ListSource(20), FakeBackend(nan_after_50))
    eng.start()
    assert eng.wait(10)
    assert eng.status.state == "finished"
    s = eng.store.summary(0)
    assert s["n_positions"] == 200 and s["nonfinite"] == 150
    verdict, fs = diagnose(s)
    assert verdict == "EXPLODING" and any("NON-FINITE" in f.text for f in fs)
    paths = write_report(tmp_path, eng.store, {"input": "test", "interrupted": False})
    assert "NON-FINITE LOSSES: 150 positions" in paths["text"].read_text()
    assert '"verdict": "EXPLODING"' in paths["json"].read_text()


def test_model_exception_keeps_what_was_seen():
    eng = Engine(ListSource(20), FakeBackend(healthy, fail_at=7))
    eng.start()
    assert eng.wait(10)
    st = eng.status
    assert st.state == "error" and "illegal memory access" in st.error and st.error_detail
    assert eng.store.n_positions(0) == 70
    assert diagnose(eng.store.summary(0))[0] == "HEALTHY"


def test_pause_resume_stop():
    gate = threading.Event()
    eng = Engine(ListSource(1000, gate=gate), FakeBackend(healthy))
    eng.start()
    gate.set()
    while eng.store.n_positions(0) < 30:
        pass
    eng.pause()
    assert eng.status.state == "paused"
    import time

    time.sleep(0.3)
    n = eng.store.n_positions(0)
    time.sleep(0.3)
    assert eng.store.n_positions(0) <= n + 10  # at most the block in flight
    eng.resume()
    while eng.store.n_positions(0) < n + 50:
        pass
    eng.stop("user")
    assert eng.wait(5)
    assert eng.status.state == "stopped" and eng.status.stop_reason == "user"
    assert eng.store.n_positions(0) < 10000


def test_store_memory_per_token():
    from ttt_tui.record.store import LossStore

    store = LossStore([0, 1, 2], 50.0, initial_capacity=16)
    block = np.ones((977, 3), np.float32)
    for _ in range(1000):
        for layer in range(3):
            store.append(layer, block)
    n = store.n_positions(0)
    assert n == 977_000
    assert store.nbytes() / (3 * n) <= 16.0
    version, view = store.view(0)
    store.append(0, block)  # a later append (and growth) leaves an earlier view intact
    assert view.shape == (n, 3) and float(view.sum()) == 3 * n


def _args(*extra):
    from ttt_tui.cli import build_parser

    sample = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "sample.wav"
    return build_parser().parse_args([str(sample), "--torch-device", "cpu", *extra])


def _live(*extra):
    from ttt_tui.run.live import LiveRun
    from ttt_tui.run.settings import RunSettings

    run = LiveRun(RunSettings.from_args(_args(*extra)))
    run.start()
    return run


def test_process_engine_runs_the_model_in_a_child(tmp_path):
    """The dashboard's engine: same results as the thread engine, losses streamed back to the store."""
    from ttt_tui.run.session import Session

    live = _live("--out", str(tmp_path / "live"))
    eng = live.engine
    assert eng.wait(60)
    live.release()
    assert eng.status.state == "finished" and eng.status.error is None
    assert abs(eng.status.audio_s - 24.73) < 0.01
    s = Session(_args("--out", str(tmp_path / "thread")))
    s.engine.start()
    assert s.engine.wait(60)
    for layer in s.store.layer_ids:
        _, a = eng.store.view(layer)
        _, b = s.store.view(layer)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_process_engine_pause_and_stop(tmp_path):
    live = _live("--realtime", "--block-seconds", "0.25", "--out", str(tmp_path / "run"))
    eng = live.engine
    import time

    t0 = time.time()
    while eng.store.n_positions(0) < 30 and time.time() - t0 < 30:
        time.sleep(0.05)
    eng.pause()
    assert eng.status.state == "paused"
    time.sleep(0.5)
    n = eng.store.n_positions(0)
    time.sleep(0.6)
    assert eng.store.n_positions(0) <= n + 13
    eng.resume()
    eng.stop("quit")
    assert eng.wait(20)
    assert eng.status.state == "stopped" and eng.status.stop_reason == "quit"
    assert 0 < eng.store.n_positions(0) < 1235
    live.release()


def test_a_signal_after_the_audio_ended_does_not_make_the_run_interrupted(tmp_path):
    """The exit code and the report agree: a signal that arrives after the last block (while the report is
    written, say) changes neither."""
    import signal as signals

    from ttt_tui.cli import build_parser
    from ttt_tui.record.runlog import run_info
    from ttt_tui.run.session import Session

    sample = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "sample.wav"
    session = Session(build_parser().parse_args([str(sample), "--out", str(tmp_path / "r"), "--torch-device", "cpu"]))
    session.engine.start()
    assert session.engine.wait(120)
    session._on_signal(signals.SIGTERM, None)
    assert run_info(session.logged_run())["interrupted"] is False and session.exit_code() == 0
    cut = Session(build_parser().parse_args([str(sample), "--out", str(tmp_path / "c"), "--torch-device", "cpu"]))
    cut._on_signal(signals.SIGTERM, None)  # before the run: it is cut short
    cut.engine.start()
    cut.engine.wait(120)
    assert run_info(cut.logged_run())["interrupted"] is True and cut.exit_code() == 143


def test_the_dashboards_engine_reads_its_data_from_the_run_log(tmp_path, monkeypatch):
    """One path for live and replay: the dashboard's store is filled from the run log its child writes, so what
    the dashboard shows is exactly what ``ttt-tui open`` / ``report`` read back, and no block is lost. The
    dashboard's process builds no model and no source (it loaded the embedded weights only for their
    description, and a Moshi checkpoint's base model twice): their makers fail here, and the run goes on."""
    from ttt_tui.record.runlog import read_run
    from ttt_tui.run import factory

    def never(*a, **k):
        raise AssertionError("the dashboard's process built a model or a source")

    monkeypatch.setattr(factory, "make_backend", never)
    monkeypatch.setattr(factory, "make_source", never)
    s = _live("--out", str(tmp_path / "run"))
    assert s.engine.wait(90)
    assert s.engine.status.state == "finished" and s.engine.log_error is None
    assert s.engine._reader is not None  # it did read the log (the queue carried no blocks)
    assert s.header.layer_ids == (0, 1, 2) and s.header.frame_rate == 50.0  # all it knows, from the log
    logged = read_run(tmp_path / "run")
    assert logged.end.state == "finished"
    for layer in s.store.layer_ids:
        _, live = s.store.view(layer)
        _, replay = logged.store.view(layer)
        assert live.shape == (1235, 3)
        np.testing.assert_array_equal(live, replay)
        # the same rows, read in other chunks (each poll's blocks at once): the running moments agree to the
        # last digits of a float64, which no screen or report shows
        live_s, replay_s = s.store.summary(layer), logged.store.summary(layer)
        assert live_s.keys() == replay_s.keys()
        for k, v in live_s.items():
            if isinstance(v, dict):
                assert v == pytest.approx(replay_s[k], rel=1e-12), k
            else:
                assert v == pytest.approx(replay_s[k], rel=1e-12, nan_ok=True), k
    s.release()


def test_when_the_log_fails_the_blocks_go_over_the_queue():
    """A full disk mid-run: the child's writer sends the blocks from the failing one on over the queue and says
    why; nothing is lost for the dashboard."""
    import queue as queues

    from ttt_tui.run.engine_process import _LogOrQueue

    class Log:
        def __init__(self):
            self.blocks = []

        def extend(self, blocks):
            if len(self.blocks) == 2:
                raise OSError(28, "No space left on device")
            self.blocks.append(blocks)

        def extend_signals(self, blocks):
            pass

        def status(self, state, audio_s):
            pass

    q = queues.Queue()
    log = Log()
    w = _LogOrQueue(log, q)
    for i in range(5):
        w.extend({0: np.full((2, 3), i, np.float32)})
    assert [b[0][0, 0] for b in log.blocks] == [0, 1]
    sent = [q.get_nowait() for _ in range(q.qsize())]
    assert [kind for kind, _ in sent] == ["losses"] * 3
    assert [b[0][0, 0] for _, b in sent] == [2, 3, 4]
    assert "No space left" in w.error


def test_a_child_whose_last_messages_are_lost_ends_as_its_log_says(tmp_path):
    """The run log is the record: if the child exits without its last status reaching the queue, the parent
    takes the end state from the log instead of calling it a dead process."""
    from ttt_tui.record.runlog import RunLogWriter
    from ttt_tui.run.engine_process import ProcessEngine
    from ttt_tui.run.session import Session

    s = Session(_args("--out", str(tmp_path / "run")))
    log = RunLogWriter(tmp_path / "run", s.log_header())
    log.close({"state": "finished", "stop_reason": None, "error": None, "audio_s": 24.73})
    eng = ProcessEngine(s.settings, "2026-01-01T00:00:00")
    eng._open_log()
    assert eng._read_log()
    assert eng.status.state == "finished" and eng.status.audio_s == 24.73 and eng.status.error is None
    s.release()
