"""The embedded default model: what the issue promises users of ``ttt-tui assets/...``."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ttt_tui.analysis.diagnosis import diagnose
from ttt_tui.analysis.stats import summarize
from ttt_tui.backends import EmbeddedBackend
from ttt_tui.backends.embedded.default_model import ASSETS, CONFIG_FILE, WEIGHTS_FILE
from ttt_tui.sources import FileSource

SAMPLE = ASSETS / "sample.wav"


@pytest.fixture(scope="module")
def sample():
    return np.concatenate(list(FileSource(SAMPLE, 16000).blocks()))


def run(audio, block, **kw):
    be = EmbeddedBackend(device="cpu", **kw)
    parts = {i: [] for i in be.layer_ids}
    for s in range(0, len(audio), block):
        be.process(audio[s : s + block])
        for layer, losses in be.take_losses().items():
            parts[layer].append(losses)
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_assets_as_promised():
    cfg = json.loads((ASSETS / CONFIG_FILE).read_text())["model"]
    assert cfg["num_layers"] >= 3 and cfg["mini_batch_size"] == 16
    assert cfg["mini_batch_size"] * cfg["hop"] / cfg["sample_rate"] <= 0.5  # one mini-batch <= 0.5 s of audio
    assert (ASSETS / WEIGHTS_FILE).stat().st_size <= 20 * 2**20
    info = sf.info(str(SAMPLE))
    assert info.duration >= 20.0
    be = EmbeddedBackend(device="cpu")
    assert all(layer.kind == "mlp" for layer in be.model.ttt_layers)
    assert be.device == "cpu"


def test_every_layer_healthy_on_held_out_speech(sample):
    losses = run(sample, 16000)
    assert len(losses) >= 3
    for layer, x in losses.items():
        s = summarize(x)
        assert x.shape == (1235, 3)
        assert s["violation_rate"] < 10.0, (layer, s["violation_rate"])
        assert s["avg_improvement"] > 1e-4, layer
        assert 1e-3 <= s["l0"]["mean"] <= 5.0, layer
        assert s["gap_last_quarter"] > s["gap_first_quarter"], layer
        assert diagnose(s)[0] == "HEALTHY", (layer, diagnose(s))


def test_chunking_does_not_change_the_losses(sample):
    audio = sample[: 16000 * 6]
    whole = run(audio, len(audio))
    for block in (5917, 320, 16000):
        chunked = run(audio, block)
        for layer in whole:
            np.testing.assert_allclose(chunked[layer], whole[layer], rtol=2e-4, atol=2e-5)


def test_lr_scale_zero_overlaps(sample):
    losses = run(sample[: 16000 * 8], 16000, lr_scale=0.0)
    for x in losses.values():
        np.testing.assert_allclose(x[:, 0], x[:, 2], rtol=1e-5)
        np.testing.assert_allclose(x[:, 1], x[:, 2], rtol=1e-5)
        assert diagnose(summarize(x))[0] == "NOT_LEARNING"


@pytest.mark.parametrize("scale,expected", [(-1.0, "DEGENERATIVE"), (1e14, "EXPLODING")])
def test_lr_scale_shows_the_failure_verdicts(sample, scale, expected):
    """The options the README documents for showing the failure diagnoses live: a sign bug (gradient ascent)
    and a step so large that float32 overflows."""
    losses = run(sample[: 16000 * 8], 16000, lr_scale=scale)
    verdicts = {diagnose(summarize(x))[0] for x in losses.values()}
    assert verdicts == {expected}, verdicts


def test_large_positive_steps_self_anneal(sample):
    """Why a large positive scale does not degenerate this model: the layer norm inside the inner loss makes
    the gradient shrink as the weights grow, so the updates keep improving the loss."""
    losses = run(sample[: 16000 * 8], 16000, lr_scale=1000.0)
    for x in losses.values():
        assert summarize(x)["avg_improvement"] > 0


def test_mini_batch_option(sample):
    be = EmbeddedBackend(device="cpu", mini_batch_size=4)
    assert all(layer.mini_batch_size == 4 for layer in be.model.ttt_layers)
    losses = run(sample[: 16000 * 3], 16000, mini_batch_size=4)
    x = losses[0]
    assert np.array_equal(x[:4, 0], x[:4, 1]) and not np.array_equal(x[4:8, 0], x[4:8, 1])


def test_weights_load_strictly(tmp_path):
    """A damaged weights file is refused, not silently half-loaded."""
    from safetensors.torch import load_file, save_file

    from ttt_tui.backends.embedded.default_model import load_default_model

    state = load_file(str(ASSETS / WEIGHTS_FILE))
    state.pop(next(k for k in state if k.endswith("W1")))
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    (tmp_path / CONFIG_FILE).write_text((ASSETS / CONFIG_FILE).read_text())
    with pytest.raises(RuntimeError, match="W1"):
        load_default_model(Path(tmp_path))
