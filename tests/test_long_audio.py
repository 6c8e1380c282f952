"""12 minutes of unseen speech through the embedded model: the whole-run verdict says HEALTHY (!), and the
windows show what the whole-run means hide, that layer 0 stops learning after about two minutes."""

import json
import random
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ttt_tui.cli import main


def espeak_speech(path, seconds: float) -> None:
    """One synthetic speaker (a voice variant the default model was not trained on) reading the GPL-2 text."""
    words = [w for w in open("/usr/share/common-licenses/GPL-2", errors="ignore").read().split() if w.isascii()]
    rng = random.Random(7)
    pieces, total, i, tmp = [], 0.0, 0, path.with_suffix(".part.wav")
    while total < seconds:
        text = " ".join(words[i : i + 50])
        i = (i + 50) % (len(words) - 50)
        subprocess.run(["espeak-ng", "-v", "en-us+m7", "-s", "160", "-w", str(tmp), text], check=True)
        x, sr = sf.read(str(tmp), dtype="float32")
        pieces += [x, np.zeros(int(sr * rng.uniform(0.1, 0.5)), np.float32)]
        total += len(x) / sr
    sf.write(str(path), np.concatenate(pieces), sr)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_twelve_minutes_layer_0_stops_learning(tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    espeak_speech(wav, 720)
    out = tmp_path / "r"
    assert main([str(wav), "--headless", "--no-plots", "--out", str(out), "--torch-device", "cpu"]) == 0
    doc = json.loads((out / "report.json").read_text())
    layer0 = doc["layers"]["0"]
    assert layer0["verdict"] == "HEALTHY"  # the whole run hides it
    (change,) = layer0["changes"]
    assert change["from"] in ("HEALTHY", "ELEVATED_VIOLATIONS")
    assert change["to"] in ("NOT_LEARNING", "DEGENERATIVE") and 60 <= change["at_s"] <= 240, change
    assert "to the end" in change["finding"]
    assert change["finding"] in (out / "ttt_diagnostic_report.txt").read_text()
    for L in ("1", "2"):  # these keep learning (less and less)
        assert all(c["to"] not in ("NOT_LEARNING", "DEGENERATIVE") for c in doc["layers"][L]["changes"])
