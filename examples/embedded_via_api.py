#!/usr/bin/env python3
"""The embedded default model's inference, recorded through the public API (``ttt_tui.Recorder``): what
``ttt-tui assets/sample.wav`` does, in your own loop. Then: ``ttt-tui open OUT`` (or ``ttt-tui report OUT``).

    python examples/embedded_via_api.py [AUDIO] [--out OUT]
"""

import argparse
from pathlib import Path

import soundfile as sf

import ttt_tui
from ttt_tui.backends import EmbeddedBackend

ROOT = Path(__file__).resolve().parents[1]

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("audio", nargs="?", default=str(ROOT / "assets" / "sample.wav"))
ap.add_argument("--out", default="ttt_tui_reports/embedded-via-api")
a = ap.parse_args()

model = EmbeddedBackend(device="cpu")  # 3 TTT-MLP layers that record (l0, lprev, lafter) per frame
audio, sr = sf.read(a.audio, dtype="float32", always_2d=True)
assert sr == model.sample_rate, f"give {model.sample_rate} Hz audio"
model.reset()
with ttt_tui.Recorder(a.out, layers=model.layer_ids, rate=model.frame_rate, model="embedded, via the API") as rec:
    for s in range(0, len(audio), sr):  # a second of audio at a time
        model.process(audio[s : s + sr, 0])
        rec.record(model.take_losses())  # per layer: [n, 3] for the frames of this second
print(a.out)
