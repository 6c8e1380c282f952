"""How a Moshi-TTT checkpoint runs (their inference's run-time settings, or the training config's), the model
audit, and reproducible decoding, on tiny random models built at test time.

Mirrored: their ``inference/run_inference_with_ttt.py`` (public repo AlufRon/claude-web, under
``moshi_ttt_try/moshi-finetune/``):
- lines 111-122: ``TTTArgs`` built without ``use_rope`` / ``rope_theta`` (TTT RoPE off), and with the defaults
  0.001 / 32 for a missing ``base_lr`` / ``mini_batch_size``;
- lines 237-266: the model cast to bfloat16 before the TTT weights are loaded;
- lines 283-297: ``override_gating_alpha_on_resume`` fills every gate alpha with ``initial_gating_alpha``;
- lines 322-332: the main transformer's RoPE ``max_period`` set to 100000 (the depformer has no ``.transformer``
  in moshi 0.2.13, so it keeps its own);
- lines 334-365: attention ``context`` from ``ttt_layer_context`` (TTT layers) and ``non_ttt_layer_context``
  (the others), 3000 where missing.
"""

import json

import moshi_tiny
import numpy as np
import pytest
import soundfile as sf
import torch
from test_moshi_backend import backend, noise

from ttt_tui.backends.moshi_ttt.checkpoint import read_checkpoint
from ttt_tui.backends.moshi_ttt.runtime import resolve
from ttt_tui.cli import main


def built(paths, **kw):
    b = backend(paths, **kw)
    b.load()
    return b


def contexts(b):
    """Per layer of the main transformer, its attention context as built."""
    out = []
    for i, layer in enumerate(b.model.transformer.layers):
        attn = (layer.original_layer if i in b.layers else layer).self_attn
        out.append(attn.context)
    return out


def test_their_inference_settings_on_the_built_model(tmp_path):
    paths = moshi_tiny.build(
        tmp_path, layers="1,2", use_rope=True, ttt_extra={"ttt_layer_context": 5, "non_ttt_layer_context": 7}
    )
    b = built(paths)
    assert contexts(b) == [7, 5, 5, 7]  # config.json says 100 for every layer
    assert b.model.transformer.max_period == 100_000 and b.model.transformer.rope.max_period == 100_000
    assert b.model.depformer.max_period == 10_000  # left as it is, as their script (it finds no .transformer)
    assert all(not layer.ttt.use_rope for layer in b.layers.values())  # TTTArgs without use_rope
    kv = b.layers[1].original_layer.self_attn._streaming_state.kv_cache
    assert kv.capacity == 5  # the KV cache is sized by the context set before streaming
    t = built(paths, follow="training")
    assert contexts(t) == [7, 5, 5, 7]  # the fields are set: training used them too
    assert t.model.transformer.max_period == 10_000 and t.model.transformer.rope.max_period == 10_000
    assert all(layer.ttt.use_rope for layer in t.layers.values())
    b.process(noise(0.4))
    t.process(noise(0.4))
    assert not np.allclose(b.take_losses()[1], t.take_losses()[1])  # RoPE and max_period change the numbers


def test_missing_and_null_context_fields(tmp_path):
    missing = built(moshi_tiny.build(tmp_path / "a", layers="1"))  # no context fields: their default 3000
    assert contexts(missing) == [3000] * 4
    assert contexts(built(moshi_tiny.build(tmp_path / "b", layers="1"), follow="training")) == [100] * 4
    nulls = moshi_tiny.build(tmp_path / "c", layers="1", ttt_extra={"ttt_layer_context": None})
    b = built(nulls)  # their inference would set None (and moshi could not stream); we keep config.json's
    assert contexts(b) == [3000, 100, 3000, 3000]
    assert "context_null" in [a["key"] for a in b.audit()]


def test_gate_override_on_resume(tmp_path):
    paths = moshi_tiny.build(tmp_path, ttt_extra={"override_gating_alpha_on_resume": True, "initial_gating_alpha": 0.5})
    b = backend(paths)
    assert b.describe()["effective_gate"]["2"]["mean"] == pytest.approx(np.tanh(0.5), rel=1e-6)
    assert "gating_override" in [a["key"] for a in b.audit()]
    t = backend(paths, follow="training")  # training ended with the checkpoint's alpha (0.1)
    assert t.describe()["effective_gate"]["2"]["mean"] == pytest.approx(np.tanh(0.1), rel=1e-2)
    assert backend(paths, gating_alpha=0.0).describe()["effective_gate"]["2"]["max"] == 0.0  # the user's wins


def test_missing_fields_take_their_inference_defaults(tmp_path):
    paths = moshi_tiny.build(tmp_path)
    tc = paths["checkpoint"] / "training_config.json"
    doc = json.loads(tc.read_text())
    del doc["ttt"]["base_lr"], doc["ttt"]["mini_batch_size"]
    tc.write_text(json.dumps(doc))
    ck = read_checkpoint(paths["checkpoint"])
    inf, audit = resolve(ck, ck.lm_kwargs, "inference")
    assert (inf.base_lr, inf.mini_batch_size) == (0.001, 32)
    tr, _ = resolve(ck, ck.lm_kwargs, "training")
    assert (tr.base_lr, tr.mini_batch_size) == (1.0, 16)
    assert "missing_fields" in [a.key for a in audit]


def test_audit_lists_the_departures_and_nothing_else(tmp_path):
    departing = moshi_tiny.build(
        tmp_path / "a",
        mlp_layers=2,
        use_rope=True,
        ttt_extra={"ttt_mlp_expansion_factor": 2.0, "ttt_layer_context": 5, "non_ttt_layer_context": 7},
    )
    b = backend(departing)
    keys = [a["key"] for a in b.audit()]
    assert keys == [
        "post_norm_wo_unused",
        "expansion_ignored",
        "rope_dropped",
        "no_write_back",
        "pad_rows",
        "attention_context",
        "max_period",
        "bf16",
    ]
    assert b.ck.spec.mlp_dims == [16, 64, 16]  # loads with 4 x head_dim, as their 2-layer class
    b.load()
    assert b.layers[2].ttt.W1.shape == (4, 16, 64) and b.process(noise(0.2)) == 3
    text = " ".join(a["consequence"] for a in b.audit())
    assert "lprev equals l0 by construction" in text
    three = backend(moshi_tiny.build(tmp_path / "b", mlp_layers=3))
    assert "double_step" in [a["key"] for a in three.audit()]
    clean = moshi_tiny.build(
        tmp_path / "c",
        mlp_layers=3,
        mini_batch_size=1,
        dtype=torch.float32,
        unused=False,
        lm_extra={"context": 3000, "max_period": 100_000},
    )
    assert [a["key"] for a in backend(clean).audit()] == ["double_step"]  # inherent to their N-layer class
    assert [a["key"] for a in backend(clean, follow="training").audit()] == ["double_step"]


def test_greedy_and_seed_in_the_report(tmp_path, capsys):
    paths = moshi_tiny.build(tmp_path / "m")
    wav = tmp_path / "in.wav"
    sf.write(str(wav), noise(1.2), 24000)
    runs = {}
    for name, extra in (("g1", ["--greedy"]), ("g2", ["--greedy"]), ("s1", ["--seed", "7"]), ("s2", ["--seed", "8"])):
        out = tmp_path / name
        assert main([str(wav), "--headless", "--out", str(out), *extra, *moshi_tiny.cli_args(paths)]) == 0
        runs[name] = (json.loads((out / "report.json").read_text()), sf.read(str(out / "output.wav"))[0])
    assert runs["g1"][0]["run"]["decoding"]["greedy"] is True
    assert runs["s1"][0]["run"]["decoding"] == {"greedy": False, "seed": 7}
    assert np.array_equal(runs["g1"][1], runs["g2"][1])  # argmax: the same audio, the same tokens
    assert not np.array_equal(runs["s1"][1], runs["s2"][1])  # another seed, other samples
    assert main([str(wav), "--headless", "--greedy", "--seed", "3", *moshi_tiny.cli_args(paths)]) == 2
    assert "--greedy does not sample" in capsys.readouterr().err


def test_absurd_model_size_is_refused_before_anything_is_built(tmp_path, capsys):
    import time

    paths = moshi_tiny.build(tmp_path)
    cfg = paths["checkpoint"] / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "num_layers": 1_000_000}))
    t0 = time.perf_counter()
    code = main([str(tmp_path / "x.wav"), "--headless", *moshi_tiny.cli_args(paths)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.perf_counter() - t0 < 5
    assert len(err.splitlines()) == 1 and "1000000 layers" in err and "GiB" in err, err


def test_parameter_estimate_matches_the_built_model():
    from moshi.models import loaders

    from ttt_tui.backends.moshi_ttt.backend import lm_parameters

    for kw in (moshi_tiny.tiny_configs()[1], {**moshi_tiny.tiny_configs()[1], "hidden_scale": 4}):
        lm = loaders.get_moshi_lm(None, lm_kwargs=kw, device="meta", dtype=torch.bfloat16)
        n = sum(p.numel() for p in lm.parameters())
        assert abs(lm_parameters(kw) - n) / n < 0.02, (lm_parameters(kw), n)


def test_sigterm_while_the_model_loads(tmp_path):
    """A model still loading cannot be interrupted from another thread: the run stops within a second anyway,
    with the report of what was seen (nothing) and exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    paths = moshi_tiny.build(tmp_path / "m")
    wav = tmp_path / "in.wav"
    sf.write(str(wav), noise(2.0), 24000)
    out = tmp_path / "rep"
    root = Path(__file__).resolve().parents[1]
    script = (
        "import sys, time\n"
        "from ttt_tui.backends.moshi_ttt import backend\n"
        "backend.MoshiBackend.load = lambda self: time.sleep(60)  # a 7B model from a slow disk\n"
        "from ttt_tui.cli import console\n"
        "sys.argv = ['ttt-tui'] + sys.argv[1:]\n"
        "console()\n"
    )
    args = [str(wav), "--headless", "--out", str(out), *moshi_tiny.cli_args(paths)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    p = subprocess.Popen([sys.executable, "-c", script, *args], stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(4)  # well into "loading"
    t0 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    code = p.wait(30)
    took = time.perf_counter() - t0
    assert code == 143 and took < 1.5, (code, took, p.stderr.read())
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["interrupted"] is True and doc["run"]["stop_reason"] == "SIGTERM"


def test_dashboard_quits_within_a_second_while_the_model_loads(tmp_path, monkeypatch):
    """The dashboard's inference child still loading its model: q (or a signal) does not wait for it."""
    import asyncio
    import os
    import time
    from pathlib import Path

    from test_tui import wait_for

    from ttt_tui.cli import build_parser
    from ttt_tui.run.live import LiveRun
    from ttt_tui.run.settings import RunSettings
    from ttt_tui.tui.app import DashboardApp

    paths = moshi_tiny.build(tmp_path / "m")
    wav = tmp_path / "in.wav"
    sf.write(str(wav), noise(2.0), 24000)
    hook = tmp_path / "hook"  # the spawned inference child runs this at startup: a 7B model from a slow disk
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import time\n"
        "from ttt_tui.backends.moshi_ttt import backend\n"
        "backend.MoshiBackend.load = lambda self: time.sleep(60)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), str(Path(__file__).resolve().parents[1])]))
    args = build_parser().parse_args([str(wav), "--out", str(tmp_path / "rep"), *moshi_tiny.cli_args(paths)])
    session = LiveRun(RunSettings.from_args(args))
    session.start()  # the log is made before the model loads (the base model loads in the engine's thread)

    async def scenario():
        app = DashboardApp(session, install_signals=False)
        async with app.run_test(size=(200, 60)) as pilot:
            await wait_for(pilot, lambda: session.engine.status.state in ("starting", "running"), timeout=30)
            await pilot.pause(3.0)  # the child is in its (slow) load
            t0 = time.perf_counter()
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, timeout=10)
            return time.perf_counter() - t0

    took = asyncio.run(scenario())
    assert took < 3.0, took
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["run"]["interrupted"] is True and doc["run"]["error"] is None


def test_base_model_neither_cached_nor_reachable_is_one_line_at_once(tmp_path):
    """No cache, no network (the hub's address is a closed port on this machine: nothing leaves it): one line,
    exit 2, at once, without the client's retries and warnings."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    paths = moshi_tiny.build(tmp_path / "m")
    env = {
        **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    t0 = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttt_tui.cli",
            str(tmp_path / "x.wav"),
            "--headless",
            "--checkpoint",
            str(paths["checkpoint"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    took = time.perf_counter() - t0
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "kyutai/moshiko-pytorch-bf16" in lines[0] and took < 15, (took, lines)
