#!/usr/bin/env python3
"""Train the embedded default model (assets/default_model.*) on speech available offline.

Corpus (Debian packages: espeak-ng, flite, pocketsphinx-testdata):
- synthetic speakers: espeak-ng voices x variants x speeds, flite voices, reading license texts from
  /usr/share/common-licenses; each speaker is one continuous stream, so the inner loop can learn it;
- real speech: pocketsphinx's "cards", "goforward", "numbers", "something" recordings.
The LibriVox clips of pocketsphinx-testdata are NOT used: they are the held-out sample (assets/sample.wav).

The outer loss (prediction of the next frames) is differentiated through the inner loop, as in the paper.
At the end the held-out sample is streamed and each layer is checked against the report rules.

    python scripts/train_default_model.py --steps 1500 [--device cuda]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttt_tui.analysis.stats import summarize  # noqa: E402
from ttt_tui.backends.embedded.default_model import ASSETS, DefaultAudioModel, DefaultModelConfig, save_default_model  # noqa: E402

PS = Path("/usr/share/pocketsphinx/test/data")
LICENSES = Path("/usr/share/common-licenses")
SR = 16000

ESPEAK_VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = ["", "+m1", "+m3", "+m5", "+f1", "+f2", "+f4", "+klatt", "+klatt2", "+Alex", "+Andy", "+belinda"]
FLITE_VOICES = ["kal", "awb", "rms", "slt", "kal16"]


def texts():
    """Sentences of plain English from the license texts on every Debian machine."""
    words = []
    for name in ("GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "Artistic", "GFDL-1.3", "CC0-1.0"):
        p = LICENSES / name
        if p.exists():
            words += p.read_text(errors="ignore").split()
    words = [w for w in words if w.isascii() and any(c.isalpha() for c in w) and "http" not in w]
    return [" ".join(words[i : i + 60]) for i in range(0, len(words) - 60, 60)]


def read_mono(path: Path, raw: bool = False) -> np.ndarray:
    if raw:
        x = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0
        sr = SR
    else:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(1)
    return soxr.resample(x, sr, SR).astype(np.float32) if sr != SR else x


def synth(cmd: list[str], out: Path) -> np.ndarray | None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        return read_mono(out)
    except Exception as e:  # a voice that is not installed: skip it
        print(f"  skipped {' '.join(cmd[:3])}: {e}", file=sys.stderr)
        return None


def build_corpus(cache: Path, seconds_per_speaker: float, seed: int = 0) -> list[np.ndarray]:
    """One float32 stream per speaker, cached as WAV files."""
    cache.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sents = texts()
    speakers = [("espeak", v + var) for v in ESPEAK_VOICES for var in ESPEAK_VARIANTS[::2]]
    speakers += [("espeak", v + var) for v in ESPEAK_VOICES[:3] for var in ESPEAK_VARIANTS[1::2]]
    speakers += [("flite", v) for v in FLITE_VOICES]
    streams = []
    for k, (engine, voice) in enumerate(speakers):
        path = cache / f"{k:03d}_{engine}_{voice.replace('+', '_')}.wav"
        if not path.exists():
            pieces, total, tmp = [], 0.0, cache / "tmp.wav"
            speed = rng.choice([140, 155, 170, 185])
            while total < seconds_per_speaker:
                text = rng.choice(sents)
                if engine == "espeak":
                    x = synth(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], tmp)
                else:
                    x = synth(["flite", "-voice", voice, "-t", text, "-o", str(tmp)], tmp)
                if x is None:
                    break
                pieces += [x, np.zeros(int(SR * rng.uniform(0.1, 0.6)), np.float32)]
                total += len(x) / SR
            if not pieces:
                continue
            sf.write(str(path), np.concatenate(pieces), SR)
        streams.append(read_mono(path))
    real = [read_mono(p) for p in sorted((PS / "cards").glob("*.wav"))]
    real += [read_mono(PS / f"{n}.raw", raw=True) for n in ("goforward", "numbers", "something")]
    gap = np.zeros(int(0.3 * SR), np.float32)
    streams.append(np.concatenate([np.concatenate([r, gap]) for r in real]))
    return streams


def make_batch(streams, model, n_frames, batch, rng: np.random.Generator, device):
    """Random crops with gain and noise augmentation -> normalised log-mel [B, T, n_mels]."""
    cfg = model.cfg
    n_samples = (n_frames - 1) * cfg.hop + cfg.n_fft
    waves = []
    for _ in range(batch):
        s = streams[rng.integers(len(streams))]
        while len(s) < n_samples:
            s = np.concatenate([s, s])
        start = rng.integers(0, len(s) - n_samples + 1)
        w = s[start : start + n_samples] * 10 ** (rng.uniform(-15, 5) / 20)
        if rng.random() < 0.5:
            w = w + rng.normal(0, 10 ** rng.uniform(-4, -2.3), n_samples).astype(np.float32)
        waves.append(w)
    wave = torch.from_numpy(np.stack(waves)).to(device)
    return model.normalize(model.logmel(wave))


def outer_loss(model, feats):
    k = model.cfg.predict_frames
    pred = model(feats[:, :-k])  # [B, T-k, k, n_mels]
    target = torch.stack([feats[:, 1 + j : feats.shape[1] - k + 1 + j] for j in range(k)], 2)
    return (pred - target).pow(2).mean()


def stream_losses(model, wave: np.ndarray, block: int = 16000) -> dict[int, np.ndarray]:
    model.reset_stream()
    x = torch.from_numpy(wave)
    for s in range(0, len(x), block):
        model.stream_step(x[s : s + block])
    return {i: layer.take_losses()[0].float().cpu().numpy() for i, layer in enumerate(model.ttt_layers)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=384, help="training crop length in frames")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seconds-per-speaker", type=float, default=75.0)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "corpus")
    ap.add_argument("--out", type=Path, default=ASSETS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qk-l2norm", action="store_true", help="L2-normalise XQ, XK per head (video-dit style)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    streams = build_corpus(args.cache, args.seconds_per_speaker, args.seed)
    hours = sum(len(s) for s in streams) / SR / 3600
    print(f"corpus: {len(streams)} streams, {hours * 60:.1f} min, built in {time.time() - t0:.0f}s", flush=True)

    cfg = DefaultModelConfig(qk_l2norm=args.qk_l2norm)
    model = DefaultAudioModel(cfg)
    # feature normalisation from the corpus
    with torch.no_grad():
        feats = torch.cat([model.logmel(torch.from_numpy(s)) for s in streams])
    cfg.feat_mean = feats.mean(0).tolist()
    cfg.feat_std = (feats.std(0) + 1e-3).tolist()
    model = DefaultAudioModel(cfg).to(args.device)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, pct_start=max(0.05, 2.5 / args.steps)
    )
    t0 = time.time()
    for step in range(1, args.steps + 1):
        feats = make_batch(streams, model, args.frames, args.batch, rng, args.device)
        loss = outer_loss(model, feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:.0f}s", flush=True)

    model = model.cpu().eval()
    sample = read_mono(ASSETS / "sample.wav")
    report = {}
    for layer_id, losses in stream_losses(model, sample).items():
        s = summarize(losses)
        report[layer_id] = s
        print(
            f"held-out layer {layer_id}: n={s['n_positions']} violations={s['violation_rate']:.2f}% "
            f"improvement={s['avg_improvement']:.5f} l0={s['l0']['mean']:.4f} "
            f"gap first/last quarter={s['gap_first_quarter']:.4f}/{s['gap_last_quarter']:.4f} "
            f"healthy={s['healthy']}"
        )
    save_default_model(
        model,
        args.out,
        extra={
            "training": {
                "steps": args.steps,
                "batch": args.batch,
                "frames": args.frames,
                "lr": args.lr,
                "corpus_minutes": round(hours * 60, 1),
                "final_outer_loss": round(loss.item(), 5),
                "seed": args.seed,
                "command": "python scripts/train_default_model.py " + " ".join(argv or sys.argv[1:]),
            },
            "held_out": {
                str(k): {m: v[m] for m in ("violation_rate", "avg_improvement", "healthy")} for k, v in report.items()
            },
        },
    )
    print(f"saved to {args.out}")
    return 0 if all(s["healthy"] for s in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
