"""Moshi-TTT checkpoints end to end on a tiny random Moshi + Mimi built at test time (no download): loading,
refusals, the streamed losses against the inner-loop references, the gate override, output.wav and the report."""

import json
import sys

import moshi_tiny
import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from test_moshi_ttt_block import reference_call

from ttt_tui.backends.moshi_ttt import MoshiBackend
from ttt_tui.cli import main
from ttt_tui.errors import InputError

SR = 24000


def backend(paths, **kw):
    return MoshiBackend(
        paths["checkpoint"],
        moshi_weight=paths["moshi"],
        mimi_weight=paths["mimi"],
        mimi_config=paths["mimi_config"],
        device="cpu",
        **kw,
    )


def noise(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    return moshi_tiny.build(tmp_path_factory.mktemp("m2"), mlp_layers=2)


@pytest.mark.parametrize(
    "mlp_layers,weights,lora",
    [(2, "lora.safetensors", False), (3, "lora.safetensors", True), (2, "consolidated.safetensors", False)],
)
def test_loads_and_streams(tmp_path, mlp_layers, weights, lora):
    paths = moshi_tiny.build(tmp_path, mlp_layers=mlp_layers, weights=weights, lora=lora)
    b = backend(paths)
    assert b.layer_ids == [2, 3] and b.sample_rate == SR and b.frame_rate == 12.5
    b.prepare_thread()
    b.reset()
    n_frames = 10
    steps = b.process(noise(n_frames * 0.08 + 0.05))  # the 50 ms rest waits for the next block
    assert steps == n_frames + 1  # the first frame is stepped twice, as their inference does
    losses, signals = b.take_losses(), b.take_signals()
    for L in (2, 3):
        assert losses[L].shape == (n_frames + 1, 3) and np.isfinite(losses[L]).all()
        assert signals[L].shape == (n_frames + 1, 3)
        lp = b.layers[L].original_layer
        if lora:
            assert type(lp.self_attn.out_projs[0]).__name__ == "LoRALinear"
    persist = mlp_layers > 2  # their N-layer class writes back in eval, the 2-layer class never
    assert b.persist == persist
    assert np.array_equal(losses[2][:, 0], losses[2][:, 1]) != persist


def test_consolidated_loads_the_base_weights_from_the_checkpoint(tmp_path):
    paths = moshi_tiny.build(tmp_path, weights="consolidated.safetensors")
    b = MoshiBackend(paths["checkpoint"], mimi_weight=paths["mimi"], mimi_config=paths["mimi_config"], device="cpu")
    assert b.moshi_file is None  # no base weights needed
    b.load()
    ref = load_file(str(paths["moshi"]))
    got = b.model.state_dict()
    assert torch.equal(got["transformer.layers.2.original_layer.norm1.alpha"], ref["transformer.layers.2.norm1.alpha"])
    assert torch.equal(got["transformer.layers.0.norm1.alpha"], ref["transformer.layers.0.norm1.alpha"])


def stream_and_capture(b, layer_id, seconds=0.8):
    """Stream noise; returns (the inputs the layer's TTT block saw, per call; its recorded losses; the
    checkpoint's inner weights in float32)."""
    b.load()
    seen = []
    ttt = b.layers[layer_id].ttt
    ttt.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    b.process(noise(seconds))
    got = b.take_losses()[layer_id]
    w0, b0 = ttt.checkpoint_weights()
    return seen, got, ([t.detach().float()[None] for t in w0], [t.detach().float()[None] for t in b0])


def test_streamed_losses_equal_the_reference(two_layer):
    """The tensors the TTT block saw, through an independent reference: same losses, frame after frame."""
    b = backend(two_layer)
    seen, got, W0 = stream_and_capture(b, 3)
    ttt = b.layers[3].ttt
    want = []
    with torch.no_grad():
        for x in seen:  # every call restarts from the checkpoint weights (their 2-layer class)
            want.append(reference_call(ttt, x, *W0, W0)[3])
    torch.testing.assert_close(torch.from_numpy(got), torch.cat(want), rtol=1e-4, atol=1e-6)


def chained_reference(ttt, seen, W0):
    """The reference's losses of the calls ``seen`` (the TTT block's inputs), the inner weights carried from
    call to call."""
    w, bb = W0
    want = []
    with torch.no_grad():
        for x in seen:
            _, w, bb, losses = reference_call(ttt, x, w, bb, W0)
            want.append(losses)
    return torch.cat(want)


def test_persist_carries_the_weights(tmp_path):
    paths = moshi_tiny.build(tmp_path, mlp_layers=2, base_lr=0.01)
    b = backend(paths, persist=True)
    seen, got, W0 = stream_and_capture(b, 2)
    ttt = b.layers[2].ttt
    torch.testing.assert_close(torch.from_numpy(got), chained_reference(ttt, seen, W0), rtol=1e-4, atol=1e-6)
    assert not np.array_equal(got[1:, 0], got[1:, 1])  # l0 at the stream start, lprev at the carried weights
    assert "--ttt-persist" in " ".join(b.notes())


def test_gating_override(two_layer):
    b = backend(two_layer, gating_alpha=0.0)
    assert b.describe()["effective_gate"]["2"] == {"mean": 0.0, "min": 0.0, "max": 0.0}
    b.load()
    block = b.layers[2].seq_modeling_block
    pairs = []
    block.register_forward_hook(lambda m, args, out: pairs.append((args[0].clone(), out.clone())))
    b.process(noise(0.3))
    assert pairs and all(torch.equal(x, y) for x, y in pairs)  # a zero gate: the TTT block adds nothing
    b5 = backend(two_layer, gating_alpha=5.0)  # clamped to 3: tanh(3)
    assert b5.describe()["effective_gate"]["3"]["min"] == pytest.approx(np.tanh(3.0), rel=1e-6)
    b5.load()
    block = b5.layers[2].seq_modeling_block
    pairs.clear()
    block.register_forward_hook(lambda m, args, out: pairs.append((args[0].clone(), out.clone())))
    b5.process(noise(0.3))
    assert not torch.equal(pairs[0][0], pairs[0][1])
    default = backend(two_layer).describe()["effective_gate"]["2"]
    assert default["mean"] == pytest.approx(np.tanh(0.1), rel=1e-2)  # the checkpoint's alpha, in bfloat16


def test_same_audio_same_run(two_layer):
    a, b = backend(two_layer), backend(two_layer)
    for x in (a, b):
        x.load()
        x.process(noise(0.5))
    la, lb = a.take_losses(), b.take_losses()
    assert all(np.array_equal(la[k], lb[k]) for k in la)
    a.reset()
    a.process(noise(0.5))
    assert np.array_equal(a.take_losses()[2], la[2])  # reset: checkpoint weights, position 0, same sampling


def test_missing_ttt_key_is_refused_by_name(tmp_path, capsys):
    paths = moshi_tiny.build(tmp_path)
    f = paths["checkpoint"] / "lora.safetensors"
    state = load_file(str(f))
    key = "transformer.layers.3.seq_modeling_block.ttt_layer.ttt.W2"
    del state[key]
    save_file(state, str(f))
    code = main(["x.wav", "--headless", *moshi_tiny.cli_args(paths)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err and "Traceback" not in err


def test_unknown_tensor_is_refused_by_name(tmp_path):
    paths = moshi_tiny.build(tmp_path)
    f = paths["checkpoint"] / "lora.safetensors"
    state = load_file(str(f))
    state["transformer.layers.1.not_a_module.weight"] = torch.zeros(3)
    save_file(state, str(f))
    b = backend(paths)
    with pytest.raises(InputError, match="not_a_module"):
        b.load()


def test_missing_moshi_package_is_one_line(tmp_path, monkeypatch, capsys):
    paths = moshi_tiny.build(tmp_path)
    monkeypatch.setitem(sys.modules, "moshi", None)
    monkeypatch.setitem(sys.modules, "moshi.models", None)
    code = main(["x.wav", "--headless", *moshi_tiny.cli_args(paths)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and 'pip install --no-deps "moshi==0.2.13"' in err


def test_base_model_not_in_an_offline_cache(tmp_path, monkeypatch, capsys):
    paths = moshi_tiny.build(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(["x.wav", "--headless", "--checkpoint", str(paths["checkpoint"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "kyutai/moshiko-pytorch-bf16" in err and "not in the Hugging Face cache" in err


def test_embedded_flags_do_not_mix(two_layer, capsys):
    assert main(["x.wav", "--headless", "--lr-scale", "2", *moshi_tiny.cli_args(two_layer)]) == 2
    assert main(["x.wav", "--headless", "--ttt-persist"]) == 2
    assert "--ttt-persist goes with --checkpoint" in capsys.readouterr().err


def test_headless_run_writes_output_wav_and_report(two_layer, tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(str(wav), noise(2.0)[:32000], 16000)  # 2 s at any rate: resampled to Mimi's 24 kHz
    out = tmp_path / "report"
    code = main([str(wav), "--headless", "--out", str(out), "--gating-alpha", "0.5", *moshi_tiny.cli_args(two_layer)])
    assert code == 0, capsys.readouterr().err
    audio, rate = sf.read(str(out / "output.wav"))
    frames = int(2.0 * 12.5)
    # 25 frames, 26 steps (the first frame twice); LMGen returns nothing while its one-step delay fills
    assert rate == SR and audio.shape[0] == frames * 1920
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["checkpoint"] == str(two_layer["checkpoint"])
    assert any("lprev equals l0 by construction" in a["consequence"] for a in doc["run"]["audit"])
    layer = doc["layers"]["2"]
    assert layer["n_positions"] == frames + 1
    assert set(layer["signals"]) == {"grad_norm", "weight_change", "step_size"}
    assert layer["effective_gate"]["mean"] == pytest.approx(np.tanh(0.5))
    text = (out / "ttt_diagnostic_report.txt").read_text()
    assert "lprev equals l0 by construction" in text and "effective gate" in text and "inner gradient norm" in text
    assert "output.wav" in capsys.readouterr().err


def test_dashboard_on_a_checkpoint(two_layer, tmp_path):
    """The dashboard's way: the model loads in the inference process only; notes, signals, output.wav."""
    import asyncio

    from test_tui import wait_for

    from ttt_tui.cli import build_parser
    from ttt_tui.run.live import LiveRun
    from ttt_tui.run.settings import RunSettings
    from ttt_tui.tui.app import DashboardApp

    wav = tmp_path / "in.wav"
    sf.write(str(wav), noise(1.5), SR)
    args = build_parser().parse_args([str(wav), "--out", str(tmp_path / "rep"), *moshi_tiny.cli_args(two_layer)])
    session = LiveRun(RunSettings.from_args(args))
    session.start()
    assert session.engine.backend is None  # this process builds no model: all it knows is the log's header
    assert session.header.layer_ids == (2, 3)

    async def scenario():
        app = DashboardApp(session, install_signals=False)
        async with app.run_test(size=(200, 60)) as pilot:
            await wait_for(pilot, lambda: app.finished_handled, timeout=60)
            await pilot.pause(0.3)
            counters = str(app.query_one("#layer-2 .counters").render())
            findings = str(app.query_one("#findings-text").render())
            return counters, findings

    counters, findings = asyncio.run(scenario())
    assert "gate 0.100" in counters and "|W-W0|/|W0|" in counters
    assert "lprev equals l0 by construction" in findings
    assert (tmp_path / "rep" / "output.wav").exists()
    # the log's write-ahead files are folded in once writer and reader are done (they used to stay behind)
    assert not (tmp_path / "rep" / "run.sqlite-wal").exists() and not (tmp_path / "rep" / "run.sqlite-shm").exists()
    from ttt_tui.record.runlog import read_run

    logged = read_run(tmp_path / "rep")  # written by the inference process, block by block
    assert logged.end.state == "finished" and logged.store.n_positions(3) == int(1.5 * 12.5) + 1
    assert logged.header.model_details["setup"]["follow"] == "inference"
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["layers"]["3"]["n_positions"] == int(1.5 * 12.5) + 1
    assert doc["layers"]["3"]["signals"]["step_size"]["mean"] > 0


def test_base_model_from_an_offline_cache(two_layer, tmp_path, monkeypatch):
    """--hf-repo through a populated Hugging Face cache with HF_HUB_OFFLINE=1: no network, no local flags."""
    import shutil

    import huggingface_hub.constants as c
    from moshi.models import loaders

    repo = "kyutai/moshiko-pytorch-bf16"
    cache = tmp_path / "hub"
    snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    shutil.copy(two_layer["moshi"], snap / loaders.MOSHI_NAME)
    shutil.copy(two_layer["mimi"], snap / loaders.MIMI_NAME)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    b = MoshiBackend(two_layer["checkpoint"], mimi_config=two_layer["mimi_config"], device="cpu")
    assert b.moshi_file == snap / loaders.MOSHI_NAME and b.describe()["base_model"] == repo
    b.load()
    assert b.process(noise(0.2)) == 3


def test_lora_config_without_lora_tensors_is_refused(tmp_path):
    paths = moshi_tiny.build(tmp_path, lora=True)
    f = paths["checkpoint"] / "lora.safetensors"
    state = {k: v for k, v in load_file(str(f)).items() if ".lora_" not in k}
    save_file(state, str(f))
    with pytest.raises(InputError, match="lora=true but .* LoRA tensors are missing"):
        backend(paths).load()
