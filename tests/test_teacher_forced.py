"""Teacher-forced Moshi-TTT (``--teacher-forced``) on a tiny random Moshi-TTT: whole mini-batches (no pad rows,
against the independent inner-loop reference), the outer loss against one moshi ``LMModel.forward`` over the
whole recording (moshi's own delay/undelay code, not ours), deterministic runs, blocks of any size, the report,
the run log and ``eval``.

What we mirror, in AlufRon/claude-web at f5e977a, ``moshi_ttt_try/moshi-finetune/finetune/paper_metrics.py``:
the 17-codebook input with the audio in codebooks 1-8 and zeros elsewhere (lines 1333-1334), the per-position
loss masked by ``target != zero_token_id`` and ``0 <= target < card``, averaged over the 8 audio codebooks
(``_compute_position_loss``, lines 1377-1410), Mimi encoding of the whole file (``_encode_audio``, line 270),
the marks at 8k/16k/24k and the slope start min(8000, n // 2) (lines 1048-1056).
"""

import importlib.util
import json
from pathlib import Path

import moshi_tiny
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from test_moshi_backend import backend as moshi_backend
from test_moshi_backend import chained_reference

from ttt_tui.analysis import outer
from ttt_tui.cli import main
from ttt_tui.record.runlog import read_run

SR = 24000
FRAME = 1920


def backend(paths, **kw):
    return moshi_backend(paths, teacher_forced=True, **kw)


def noise(frames, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(frames * FRAME)).astype(np.float32)


@pytest.fixture(scope="module")
def three_layer(tmp_path_factory):  # their N-layer class: writes its update back
    return moshi_tiny.build(tmp_path_factory.mktemp("tf3"), mlp_layers=3, base_lr=0.1)


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    return moshi_tiny.build(tmp_path_factory.mktemp("tf2"), mlp_layers=2, base_lr=0.1)


def stream(b, x, block):
    b.prepare_thread()
    b.reset()
    steps = sum(b.process(x[i : i + block]) for i in range(0, len(x), block))
    return steps, b.take_losses(), b.take_outer()


def whole_forward(b, codes):
    """The independent reference: ONE moshi LMModel.forward over the whole recording's codes [8, T] (not
    streaming, fresh inner weights): moshi delays and undelays the codebooks itself. Returns the outer loss per
    position (NaN where a codebook has no logits: the last position's delayed codebooks) and each TTT layer's
    recorded losses."""
    lm = b.model
    lm._stop_streaming()
    for layer in b.layers.values():
        layer.ttt.reset_stream()
    with torch.no_grad():
        codes = codes[None]
        T = codes.shape[-1]
        full = torch.zeros(1, lm.num_codebooks, T, dtype=torch.long)
        full[:, 1 : 1 + lm.dep_q] = codes  # text and the user's stream: token 0 (paper_metrics.py:1333-1334)
        out = lm(full)
        logits, mask = out.logits[0].float(), out.mask[0]  # [8, T, card], [8, T]
        target = full[0, 1 : 1 + lm.dep_q]
        ce = F.cross_entropy(logits.nan_to_num().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
        ce = ce.view(lm.dep_q, T)
        valid = mask & (target != lm.zero_token_id) & (target >= 0) & (target < lm.card)
        per_position = (ce * valid).sum(0) / valid.sum(0)
        per_position[~valid.all(0)] = float("nan")  # the last position: the delayed codebooks have no logits
    losses = {L: layer.ttt.take()[0].numpy() for L, layer in b.layers.items()}
    return per_position.numpy(), losses


def fed_codes(b):
    """Record the Mimi codes each chunk feeds the model: ``b.fed`` [8, frames so far]."""
    b.fed = []
    orig = type(b.tf).chunk
    b.tf.chunk = lambda audio: (b.fed.append(audio.clone()), orig(b.tf, audio))[1]


@pytest.mark.parametrize("which,persist", [("three_layer", False), ("two_layer", True)])
def test_streamed_chunks_equal_one_forward_over_the_whole_recording(which, persist, request):
    paths = request.getfixturevalue(which)
    b = _loaded(paths, persist)
    fed_codes(b)
    C = b.mini_batch_size
    x = noise(5 * C)
    steps, losses, got = stream(b, x, 3000)  # blocks that split frames and mini-batches
    assert steps == 5 * C
    codes = torch.cat(b.fed, 1)
    assert codes.shape == (8, 5 * C)
    want, want_losses = whole_forward(_loaded(paths, persist), codes)
    assert got.shape == (5 * C - 1,)  # the last position waits for its delayed codebooks
    np.testing.assert_allclose(got, want[:-1], rtol=1e-5, atol=1e-5)
    assert np.isnan(want[-1])
    for L in losses:
        np.testing.assert_allclose(losses[L], want_losses[L], rtol=1e-4, atol=1e-6)
    # and the model learned something in the inner loop: lprev moves away from l0 after the first chunk
    assert not np.allclose(losses[2][C:, 0], losses[2][C:, 1])


def _loaded(paths, persist):
    b = backend(paths, persist=persist)
    b.load()
    return b


def test_mimi_streaming_codes_equal_the_whole_file_encoding(three_layer):
    """ttt-tui encodes frame by frame (streaming); their evaluation encodes the whole file at once. The codes
    agree but for rare near ties of the residual quantizer, where the float summation order decides (measured
    with the tiny random Mimi: speech 0-1 of 1280 codes, noise 4-5 of 2400, depending on the thread count)."""
    from ttt_tui.sources import FileSource

    b = _loaded(three_layer, False)
    wav = Path(__file__).resolve().parents[1] / "assets" / "sample.wav"
    sample = np.concatenate(list(FileSource(wav, SR, block_seconds=5).blocks()))
    for x, agree in ((sample[: 160 * FRAME], 0.995), (noise(160), 0.99)):
        fed_codes(b)
        stream(b, x, 5000)
        b.mimi._stop_streaming()
        with torch.no_grad():
            whole = b.mimi.encode(torch.from_numpy(x).view(1, 1, -1))[0]
        b.mimi.streaming_forever(1)
        same = (torch.cat(b.fed, 1) == whole).float().mean().item()
        assert same >= agree, same


def test_every_update_sees_whole_mini_batches_no_pad_rows(two_layer):
    """Each TTT call gets exactly one mini-batch of real rows; the recorded losses are the independent
    primal reference's on those rows, the inner weights carried from call to call (--ttt-persist)."""
    b = _loaded(two_layer, True)
    C = b.mini_batch_size
    ttt = b.layers[3].ttt
    seen = []
    ttt.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    _, losses, _ = stream(b, noise(4 * C + 5), 4000)  # 5 frames short of a mini-batch: not evaluated
    assert [x.shape[1] for x in seen] == [C] * 4
    w0, b0 = ttt.checkpoint_weights()
    W0 = ([t.detach().float()[None] for t in w0], [t.detach().float()[None] for t in b0])
    torch.testing.assert_close(torch.from_numpy(losses[3]), chained_reference(ttt, seen, W0), rtol=1e-4, atol=1e-6)


def test_deterministic_and_independent_of_the_block_size(three_layer):
    x = noise(40, seed=3)
    a = stream(_loaded(three_layer, False), x, 24000)
    b = _loaded(three_layer, False)
    again = stream(b, x, 24000)
    other = stream(b, x, 777)  # the same backend after reset, other block sizes
    assert again[0] == other[0] == a[0]
    np.testing.assert_array_equal(again[2], a[2])  # two runs: identical, bit for bit
    np.testing.assert_allclose(other[2], a[2], rtol=1e-5, atol=1e-6)  # Mimi's streaming, other block sizes
    for L in a[1]:
        np.testing.assert_array_equal(again[1][L], a[1][L])
        np.testing.assert_allclose(other[1][L], a[1][L], rtol=1e-4, atol=1e-6)


def test_notes_and_audit_say_what_runs(three_layer):
    b = backend(three_layer)
    keys = {a["key"] for a in b.audit()}
    assert "pad_rows" not in keys  # whole mini-batches: their frame-by-frame padding does not apply
    assert "pad_rows" in {a["key"] for a in moshi_backend(three_layer).audit()}
    assert any("no pad rows" in n for n in b.notes())
    assert b.describe()["decoding"] == "teacher-forced"
    assert b.min_audio_s == pytest.approx(b.mini_batch_size * 0.08)


def test_headless_report_log_and_eval(three_layer, tmp_path, capsys):
    args = moshi_tiny.cli_args(three_layer)
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(60, seed=5), SR)
    out = tmp_path / "r"
    assert main([str(wav), "--headless", "--teacher-forced", "--out", str(out), *args]) == 0
    doc = json.loads((out / "report.json").read_text())
    o = doc["outer_loss"]
    csv = np.loadtxt(out / "outer_loss.csv", delimiter=",", skiprows=1)
    assert o["n_positions"] == csv.shape[0] == 60 - 60 % 8 - 1
    assert o["mean"] == pytest.approx(csv[:, 2].mean(), rel=1e-6)
    assert (out / "outer_loss.png").stat().st_size > 10_000
    text = (out / "ttt_diagnostic_report.txt").read_text()
    assert "OUTER LOSS" in text and "teacher-forced" in text
    run = read_run(out)  # the run log holds the outer loss too (open, report, compare, eval read it)
    np.testing.assert_allclose(run.store.outer_view(), csv[:, 2], rtol=1e-6)
    check_opened_screen(out, o, tmp_path)
    cmp = tmp_path / "cmp"  # two checkpoints are compared on the outer loss first
    assert main(["compare", str(out), str(out), "--headless", "--no-plots", "--out", str(cmp)]) == 0
    assert json.loads((cmp / "compare.json").read_text())["runs"][1]["outer_loss"]["mean"] == pytest.approx(o["mean"])
    assert f"mean {o['mean']:.3f} over {o['n_positions']} positions" in (cmp / "compare.txt").read_text()
    check_compare_screen(out, o, tmp_path)
    tb = tmp_path / "tb"
    if importlib.util.find_spec("tensorboardX") is not None:
        from test_runlog import read_events

        assert main(["tensorboard", str(out), "--logdir", str(tb)]) == 0
        series = read_events(tb / "r")["model/outer_loss"]
        assert [s for s, _ in series] == [1, 2, 3, 4]  # whole seconds (12 positions each) of the 55 positions
        assert series[0][1] == pytest.approx(csv[:12, 2].mean(), rel=1e-5)  # 12.5 -> 12 positions a second
    # a data set: the per-file outer loss, and the mean over files by position
    ds = tmp_path / "ds"
    ds.mkdir()
    for i, frames in enumerate((30, 45)):
        sf.write(ds / f"f{i}.wav", noise(frames, seed=10 + i), SR)
    ev = tmp_path / "ev"
    assert main(["eval", str(ds), "--teacher-forced", "--out", str(ev), *args]) == 0
    e = json.loads((ev / "eval.json").read_text())
    per_file = [read_run(r["folder"]).store.outer_view() for r in e["runs"]]
    assert [r["outer_loss"]["mean"] for r in e["runs"]] == pytest.approx([float(v.mean()) for v in per_file])
    eo = e["outer_loss"]
    assert eo["files"] == 2 and eo["n_positions"] == max(len(v) for v in per_file)
    k = min(len(v) for v in per_file)
    by = dict(zip(eo["by_position"]["position"], eo["by_position"]["mean"], strict=True))
    for p, m in by.items():
        want = np.mean([v[p] for v in per_file if len(v) > p])
        assert m == pytest.approx(want, rel=1e-6), p
    assert eo["by_position"]["n_files"][0] == 2 and eo["by_position"]["n_files"][-1] == 1 and k < eo["n_positions"]
    assert (ev / "eval_outer_loss.png").is_file()
    assert "OUTER LOSS, mean over 2 files" in (ev / "eval.txt").read_text()


def check_opened_screen(out, o, tmp_path):
    """`ttt-tui open` on the run: the header and the findings show the outer loss, as the report says."""
    import asyncio

    from ttt_tui.tui.app import DashboardApp
    from ttt_tui.tui.opened import OpenedRun

    run = OpenedRun(out)
    app = DashboardApp(run, refresh_hz=2.0)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(40):
                await pilot.pause(0.1)
                if run.engine.done:
                    break
            await pilot.pause(0.4)
            app.save_screenshot(filename="tf.svg", path=str(tmp_path))
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        run.engine.stop("closed")
        run.engine.wait(2)
        run.reader.close()
    svg = (tmp_path / "tf.svg").read_text().replace("&#160;", " ")
    assert f"outer loss {o['mean']:.3f}" in svg  # the header
    assert "outer loss: " in svg and f"mean {o['mean']:.3f} over {o['n_positions']} positions" in svg  # findings


def check_compare_screen(out, o, tmp_path):
    import asyncio

    from ttt_tui.report.compare import compare_runs
    from ttt_tui.tui.compare_view import CompareApp

    app = CompareApp(compare_runs([out, out]))

    async def drive():
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.3)
            app.save_screenshot(filename="cmp.svg", path=str(tmp_path))
            await pilot.press("q")

    asyncio.run(drive())
    svg = (tmp_path / "cmp.svg").read_text().replace("&#160;", " ")
    assert svg.count(f"mean {o['mean']:.3f} over {o['n_positions']} positions") == 2  # each run's outer loss


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--greedy"], "--teacher-forced samples nothing"),
        (["--seed", "3"], "--teacher-forced samples nothing"),
    ],
)
def test_refusals(three_layer, tmp_path, capsys, extra, needle):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(20), SR)
    assert main([str(wav), "--headless", "--teacher-forced", *extra, *moshi_tiny.cli_args(three_layer)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_refusals_without_a_checkpoint_and_short_audio(three_layer, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(5), SR)  # 5 frames: less than one mini-batch of 8
    assert main([str(wav), "--headless", "--teacher-forced"]) == 2
    assert "--teacher-forced goes with --checkpoint" in capsys.readouterr().err
    assert main([str(wav), "--headless", "--teacher-forced", *moshi_tiny.cli_args(three_layer)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shorter than one mini-batch" in err[0]


def test_outer_summary_marks_slope_and_interval():
    rng = np.random.default_rng(0)
    n = 30_000
    pos = np.arange(n)
    slope = -2e-5  # per position: -0.02 per 1000
    y = 4.0 + slope * pos + 0.5 * rng.standard_normal(n)
    s = outer.summary(y, 12.5)
    assert s["at"]["8k"] == pytest.approx(y[7500:8500].mean())
    assert s["at"]["24k"] == pytest.approx(y[23500:24500].mean())
    assert s["slope_from"] == 8000  # theirs: min(8000, n // 2)
    assert abs(s["slope_per_1k"] - slope * 1000) < s["slope_ci95_per_1k"]
    assert s["slope_ci95_per_1k"] < abs(slope * 1000)  # the trend is resolved
    assert outer.trend_word(s["slope_per_1k"], s["slope_ci95_per_1k"]).startswith("falling")
    assert len(s["by_1k"]) == 30 and s["by_1k"][0] == pytest.approx(y[:1000].mean())
    flat = outer.summary(4.0 + 0.5 * rng.standard_normal(n), 12.5)
    assert outer.trend_word(flat["slope_per_1k"], flat["slope_ci95_per_1k"]).startswith("no clear trend")
    short = outer.summary(np.full(5000, 3.0), 12.5)
    assert short["at"] == {"8k": None, "16k": None, "24k": None} and short["slope_from"] == 2500
    nan = outer.summary(np.array([np.nan, 1.0, 3.0]), 12.5)
    assert nan["mean"] == 2.0 and np.isnan(nan["slope_per_1k"])
