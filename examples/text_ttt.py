#!/usr/bin/env python3
"""A tiny TTT-MLP language model reading text, token by token, recorded with ``ttt_tui.Recorder``: a token
run (positions are tokens, not seconds). Its two TTT layers (ttt-tui's ``TTTLayer``, the ttt-lm-pytorch layout)
learn to reconstruct their own keys while the text streams in; the recorder keeps their losses on the device
and copies them to the host once per 1,024 tokens. Then: ``ttt-tui open OUT``.

    python examples/text_ttt.py [--tokens 4096] [--out OUT]
"""

import argparse

import torch
from torch import nn

import ttt_tui
from ttt_tui.ttt import TTTLayer

TEXT = (
    "Test-time training layers keep a small model as their hidden state and train it while the sequence "
    "streams in. Whether that inner learning works shows in three losses per token: before any update, "
    "before this token's update, and after it. "
)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--tokens", type=int, default=4096)
ap.add_argument("--out", default="ttt_tui_reports/text-ttt")
a = ap.parse_args()

torch.manual_seed(0)
dim = 64
embed = nn.Embedding(256, dim)  # bytes as tokens
layers = nn.ModuleList([TTTLayer(dim, num_heads=4, kind="mlp", mini_batch_size=16) for _ in range(2)])
tokens = torch.tensor(list((TEXT * (a.tokens // len(TEXT) + 1)).encode()[: a.tokens]))

with torch.no_grad(), ttt_tui.Recorder(a.out, layers=[0, 1], model="tiny TTT-MLP LM on text") as rec:
    for layer in layers:
        layer.reset_stream()
    for s in range(0, len(tokens), 64):  # 64 tokens per step of the stream
        x = embed(tokens[s : s + 64])[None]
        for layer in layers:
            x = x + layer.stream_step(x)
        rec.record({i: layer.take_losses()[0] for i, layer in enumerate(layers)})  # [n, 3] tensors
print(a.out)
