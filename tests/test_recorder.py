"""``ttt_tui.Recorder``: Figure 5 from a user's own loop, into the run log every reader reads.

- way 1 (raw losses): what the embedded backend records, handed over in uneven chunks as numpy arrays and as
  tensors, reads back bit for bit; torch tensors are copied to the host once per flush, not per call;
- way 2 (the inner loop's inputs): ttt-tui's inner loop (``ttt.inner_loop``, the embedded model's code) and
  ``record_inner`` from the weights before and after each update agree: every loss with mini-batch 1, and with
  mini-batch 16 l0 and lprev everywhere and lafter at each mini-batch's last token (the causal form's lafter
  inside a mini-batch uses per-token weights; docs/python-api.md);
- switched off, or on a rank other than 0, nothing is written; an exception in the loop ends the log as
  "error" with its message; bad shapes and unknown layers are one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_default_model import run, sample  # noqa: F401 (sample: a fixture)

import ttt_tui
from ttt_tui.errors import InputError
from ttt_tui.record.runlog import read_run
from ttt_tui.ttt import inner_loop


@pytest.fixture(scope="module")
def backend_losses(sample):  # noqa: F811 (the fixture of test_default_model)
    """The embedded model's own recording of the sample (its backend, a second of audio at a time)."""
    return run(sample, 16000)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_raw_losses_read_back_as_recorded(tmp_path, backend_losses, as_tensor):
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    with ttt_tui.Recorder(out, rate=50.0, model="embedded via the API", flush_every=300, report=False) as rec:
        n = len(backend_losses[0])
        s = 0
        while s < n:
            k = int(rng.integers(1, 97))
            chunk = {L: v[s : s + k] for L, v in backend_losses.items()}
            rec.record({L: torch.from_numpy(c.copy()) if as_tensor else c for L, c in chunk.items()})
            s += k
    run = read_run(out)
    assert run.end.state == "finished" and run.header.layer_ids == (0, 1, 2)
    assert run.header.frame_rate == 50.0 and run.header.position_unit == "audio frame"
    for L, v in backend_losses.items():
        np.testing.assert_array_equal(run.store.view(L)[1], v)


def test_tensors_are_copied_once_per_flush(tmp_path, monkeypatch):
    """No host copy per record() call: tensors are joined on their device and copied at a flush."""
    from ttt_tui import recording

    copies = []
    real = recording.host_copy
    monkeypatch.setattr(recording, "host_copy", lambda *b: copies.append(len(b)) or real(*b))
    with ttt_tui.Recorder(tmp_path / "run", layers=[0, 1], flush_every=100, report=False) as rec:
        for _ in range(250):
            rec.record({0: torch.rand(1, 3), 1: torch.rand(1, 3)})
        assert len(copies) == 2 * 2  # two flushes (at 100 and 200 positions), one copy per layer each
    assert len(copies) == 2 * 3  # and the rest at close
    assert read_run(tmp_path / "run").store.n_positions(1) == 250


def _weights(kind, H, d, h, rng):
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    W = {"W1": torch.randn(1, H, d, h, generator=g) * 0.3, "b1": torch.randn(1, H, 1, h, generator=g) * 0.1}
    if kind == "mlp":
        W |= {"W2": torch.randn(1, H, h, d, generator=g) * 0.3, "b2": torch.randn(1, H, 1, d, generator=g) * 0.1}
    return W


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("mini_batch", [1, 16])
def test_inner_loop_inputs_give_ttt_tuis_own_losses(tmp_path, kind, mini_batch):
    rng = np.random.default_rng(1)
    B, H, T, d = 1, 2, 64, 8
    h = d if kind == "linear" else 4 * d
    g = torch.Generator().manual_seed(2)
    XQ, XK, XV = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) for _ in range(3))
    target = XV - XK
    lr = torch.full((B, H, T), 0.1, dtype=torch.float64)
    ln_w = 1.0 + 0.1 * torch.randn(H, d, generator=g, dtype=torch.float64)
    ln_b = 0.1 * torch.randn(H, d, generator=g, dtype=torch.float64)
    W0 = {k: v.double() for k, v in _weights(kind, H, d, h, rng).items()}
    whole = inner_loop(kind, W0, ln_w, ln_b, XQ, XK, target, lr, mini_batch).losses[0].numpy()
    with ttt_tui.Recorder(tmp_path / "run", layers=[7], report=False) as rec:
        W = W0
        for s in range(0, T, mini_batch):  # the user's loop: one update after another
            e = s + mini_batch
            after = inner_loop(
                kind, W, ln_w, ln_b, XQ[:, :, s:e], XK[:, :, s:e], target[:, :, s:e], lr[:, :, s:e], mini_batch, W0=W0
            ).params
            rec.record_inner(7, XK[:, :, s:e], target[:, :, s:e], W0, W, after, ln_w, ln_b)
            W = after
    got = read_run(tmp_path / "run").store.view(7)[1]
    assert got.shape == (T, 3)
    np.testing.assert_allclose(got[:, :2], whole[:, :2], rtol=1e-5, atol=1e-6)  # float32 in the log
    last = np.arange(mini_batch - 1, T, mini_batch)
    np.testing.assert_allclose(got[last, 2], whole[last, 2], rtol=1e-5, atol=1e-6)
    if mini_batch > 1:  # inside a causal mini-batch lafter is at per-token weights: not the update's end
        assert not np.allclose(got[:, 2], whole[:, 2], rtol=1e-5, atol=1e-6)


def test_switched_off_and_other_ranks_write_nothing(tmp_path, monkeypatch):
    with ttt_tui.Recorder(tmp_path / "off", enabled=False) as rec:
        rec.record({0: np.zeros((5, 3))})
    assert not (tmp_path / "off").exists()
    monkeypatch.setenv("RANK", "1")
    with ttt_tui.Recorder(tmp_path / "rank1") as rec:
        rec.record({0: np.zeros((5, 3))})
    assert not (tmp_path / "rank1").exists()
    with ttt_tui.Recorder(tmp_path / "all", all_ranks=True, report=False) as rec:  # by choice: a log per rank
        rec.record({0: np.ones((5, 3))})
    assert read_run(tmp_path / "all" / "rank1").store.n_positions(0) == 5


def test_an_exception_in_the_loop_ends_the_log_as_an_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with ttt_tui.Recorder(tmp_path / "run") as rec:
            rec.record({3: np.tile([[1.2, 1.0, 0.9]], (200, 1))})
            raise ZeroDivisionError("the user's loop failed")
    run = read_run(tmp_path / "run")
    assert run.end.state == "error" and "ZeroDivisionError" in run.end.error
    assert run.store.n_positions(3) == 200
    doc = json.loads((tmp_path / "run" / "report.json").read_text())  # the report of what it saw
    assert doc["run"]["state"] == "error" and doc["layers"]["3"]["n_positions"] == 200


def test_bad_input_is_one_line(tmp_path):
    with ttt_tui.Recorder(tmp_path / "run", layers=[0], report=False) as rec:
        with pytest.raises(InputError, match=r"layer 0 has shape \(5, 2\); give \[n, 3\]"):
            rec.record({0: np.zeros((5, 2))})
        with pytest.raises(InputError, match="layer 4 was not among the layers"):
            rec.record({4: np.zeros((5, 3))})
    with pytest.raises(InputError, match="rate"):
        ttt_tui.Recorder(tmp_path / "x", rate=0)


def test_a_token_run_speaks_of_tokens_not_seconds(tmp_path):
    """A text model's run (no rate): positions are tokens everywhere a user reads them (report, headline,
    windows, the dashboard's header and counters, the chart's axis), and the windows are 1,000 tokens."""
    from test_tui_sizes import show

    rng = np.random.default_rng(0)
    n = 6000
    lafter = 1.0 + 0.1 * rng.random(n)
    lprev = lafter + 0.05 + 0.02 * rng.random(n)
    rows = np.stack([lprev + 0.2, lprev, lafter], 1)
    rows[3000:, 1] = rows[3000:, 2]  # layer 0 stops learning at token 3,000
    out = tmp_path / "run"
    with ttt_tui.Recorder(out, model="a text TTT") as rec:
        for s in range(0, n, 64):
            rec.record({0: rows[s : s + 64]})
    text = (out / "ttt_diagnostic_report.txt").read_text()
    assert "Positions: 6,000 tokens" in text and "of audio" not in text and "Audio:" not in text
    assert "windows of 1,000 tokens" in text and "token 3,000 token 4,000" in text
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["position_unit"] == "token"
    assert doc["layers"]["0"]["headline"] == "HEALTHY overall · NOT_LEARNING 50 % of the tokens, since token 3,000"

    seen = show(out, (160, 45), tmp_path)
    header, counters, caption = seen["header"], seen["counters"][0], seen["captions"][0]
    assert "positions 6,000" in header and "audio" not in header and "real time" not in header, header
    assert "positions 6000 " in counters and "last 1,000 tokens" in counters and "since token 3,000" in counters
    assert " s " not in counters.split("\n")[0], counters
    assert caption.endswith("x: token"), caption


def test_a_recorder_never_closed_still_ends_its_log(tmp_path):
    """No ``with``, no ``close()``: at the program's end the log gets its end record and what was recorded."""
    import subprocess
    import sys

    script = (
        "import numpy as np, ttt_tui\n"
        f"rec = ttt_tui.Recorder({str(tmp_path / 'run')!r}, report=False)\n"
        "rec.record({5: np.tile([[1.2, 1.0, 0.9]], (300, 1))})\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0
    run = read_run(tmp_path / "run")
    assert run.end.state == "stopped" and "without closing" in run.end.stop_reason
    assert run.store.n_positions(5) == 300
