"""Our implementation of the TTT block our users insert into Moshi (shared/reference/moshi-ttt-checkpoints.md,
"The layer they insert"), with the three Figure-5 losses and the inner-loop signals recorded per real token.

Module and parameter names follow their checkpoints, so that a layer's state dict has their keys:
``transformer.layers.L.original_layer.*`` (Moshi's layer) and
``transformer.layers.L.seq_modeling_block.{ttt_layer.ttt.*, forward_ssm_gating.gating_alpha, ...}``.

Runtime semantics, as theirs unless told otherwise (``persist``):
- each call is right-padded with zero rows to a whole mini-batch; the pad rows (whose projections are the
  Linear biases) take part in the update, non-causal, one update per mini-batch;
- the 2-layer class never writes its updated weights back (every call restarts from the checkpoint's weights,
  so lprev equals l0 by construction); the N-layer class writes them back in eval mode.
Losses and signals are kept on the device and copied in blocks (``take``): no host synchronisation per frame.
"""

from __future__ import annotations

import torch
from moshi.modules.streaming import StreamingModule
from moshi.modules.transformer import _LayerState
from torch import nn

from .moshi_ttt_math import MOSHI_LN_EPS, padded_step, sq_norm

TARGET_EPS = 1e-5  # their ln_reconstruction_target: (x - mean) / (unbiased std + 1e-5)
GATE_CLAMP = 3.0


def audio_rope(head_dim: int, n: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [n, head_dim/2] of their 1-D audio RoPE (``audio_scaling=True``): inverse frequencies
    ``theta^(-2i/d)`` scaled by ``0.5 + 1.5 exp(-2i / 2d)``."""
    i2 = torch.arange(0, head_dim, 2, dtype=torch.float32)
    freqs = theta ** (-i2 / head_dim) * (0.5 + 1.5 * torch.exp(-i2 / (2 * head_dim)))
    angles = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1) of the last dim; x [B, H, n, d], cos/sin [n, d/2]."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)


class MoshiTTT(nn.Module):
    """Their TTT-MLP (video-dit style, non-causal), any inner depth, recording what ttt-tui shows."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dims: list[int],
        base_lr: float,
        mini_batch_size: int,
        use_rope: bool = False,
        rope_theta: float = 10000.0,
        persist: bool | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.mlp_dims = list(mlp_dims)
        self.base_lr, self.mini_batch_size = float(base_lr), int(mini_batch_size)
        self.use_rope, self.rope_theta = bool(use_rope), float(rope_theta)
        H = num_heads
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=True, **fk) for _ in range(4))
        self.learnable_ttt_lr_weight = nn.Parameter(torch.zeros(H, 1, dim, **fk))
        self.learnable_ttt_lr_bias = nn.Parameter(torch.zeros(H, 1, **fk))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, self.head_dim, **fk))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, self.head_dim, **fk))
        self.post_norm = nn.LayerNorm(dim, eps=1e-6, **fk)
        shapes = [(H, a, b) for a, b in zip(self.mlp_dims[:-1], self.mlp_dims[1:], strict=True)]
        if len(shapes) == 2:  # their TTTMLP: W1, b1, W2, b2
            self.W1 = nn.Parameter(torch.zeros(*shapes[0], **fk))
            self.b1 = nn.Parameter(torch.zeros(H, 1, shapes[0][2], **fk))
            self.W2 = nn.Parameter(torch.zeros(*shapes[1], **fk))
            self.b2 = nn.Parameter(torch.zeros(H, 1, shapes[1][2], **fk))
        else:  # their TTTMLPMultiLayer: weights.i, biases.i
            self.weights = nn.ParameterList([nn.Parameter(torch.zeros(*s, **fk)) for s in shapes])
            self.biases = nn.ParameterList([nn.Parameter(torch.zeros(H, 1, s[2], **fk)) for s in shapes])
        # their write-back: never in the 2-layer class, in eval mode in the N-layer class
        self.theirs_persist = len(shapes) > 2
        self.persist = self.theirs_persist if persist is None else bool(persist)
        self.record = True
        self._W: tuple[list, list] | None = None
        self._W0: tuple[list, list] | None = None
        self._at_w0 = True
        self._losses: list[torch.Tensor] = []
        self._signals: list[torch.Tensor] = []

    # -- inner weights ----------------------------------------------------------------------------------
    def checkpoint_weights(self) -> tuple[list, list]:
        if len(self.mlp_dims) == 3:
            return [self.W1, self.W2], [self.b1, self.b2]
        return list(self.weights), list(self.biases)

    def reset_stream(self) -> None:
        """Stream start: the inner weights are the checkpoint's (float32 copies, as their ops compute)."""
        w, b = self.checkpoint_weights()
        self._W0 = ([t.detach().float()[None] for t in w], [t.detach().float()[None] for t in b])
        self._W = self._W0
        self._w0_sq = sq_norm(self._W0[0] + self._W0[1])
        # the small parameters in float32, once per stream instead of once per frame
        self._gamma = self.ttt_norm_weight.detach().float()[None, :, None]
        self._beta = self.ttt_norm_bias.detach().float()[None, :, None]
        self._lr_w = self.learnable_ttt_lr_weight.detach()[:, 0].float()
        self._lr_b = self.learnable_ttt_lr_bias.detach().float()[None]
        self._pad_rows = [m.bias.detach().float() for m in (self.wq, self.wk, self.wv)]  # a zero row's projections
        self._at_w0 = True
        self._losses, self._signals = [], []

    def take(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Losses [n, 3] and signals [n, 3] recorded since the last call, still on the device."""
        if not self._losses:
            return None, None
        losses, signals = torch.cat(self._losses, 0), torch.cat(self._signals, 0)
        self._losses, self._signals = [], []
        return losses, signals

    # -- the block --------------------------------------------------------------------------------------
    def _rope_table(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions 0..C-1, made once per device (no host-to-device copy per frame)."""
        table = getattr(self, "_rope", None)
        if table is None or table[0].device != torch.device(device):
            cos, sin = audio_rope(self.head_dim, self.mini_batch_size, self.rope_theta)
            self._rope = table = (cos.to(device), sin.to(device))
        return table

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [B, n, dim] -> [B, H, n, d]
        B, n, _ = t.shape
        return t.reshape(B, n, self.num_heads, self.head_dim).transpose(1, 2)

    def inputs(self, x: torch.Tensor):
        """XQ, XK, target, eta [B, H, L, .] (float32) for the real rows ``x`` [B, T, dim] right-padded with
        zero rows to L, a multiple of the mini-batch (their hybrid layer). A zero row's projections are the
        biases, so the pad rows cost no matmul. Within a stream (after ``reset_stream``)."""
        B, T, D = x.shape
        C = self.mini_batch_size
        L = -(-T // C) * C
        proj = [_project(x, m) for m in (self.wq, self.wk, self.wv)]
        lr_logit = torch.einsum("btc,hc->bht", x.float(), self._lr_w)
        if L > T:
            proj = [torch.cat([p, b.expand(B, L - T, D)], 1) for p, b in zip(proj, self._pad_rows, strict=True)]
            lr_logit = torch.cat([lr_logit, lr_logit.new_zeros(B, self.num_heads, L - T)], 2)
        XQ, XK, XV = (self._heads(p) for p in proj)
        XQ, XK = nn.functional.normalize(XQ, dim=-1), nn.functional.normalize(XK, dim=-1)
        if self.use_rope:  # positions arange(L) % C, as theirs: L is a multiple of C, so the table repeats
            cos, sin = (t.repeat(L // C, 1) for t in self._rope_table(x.device))
            XQ, XK = apply_rope(XQ, cos, sin), apply_rope(XK, cos, sin)
        r = XV - XK  # their target: LN(XV - XK) with the unbiased std and (std + 1e-5)
        r = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + TARGET_EPS)
        target = self._gamma * r + self._beta
        gate = torch.sigmoid(lr_logit + self._lr_b)  # [B, H, L]
        eta = self.base_lr * gate / self.head_dim / C  # their eta carries the 1/C (non-causal)
        return XQ, XK, target, eta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """TTT(x) for the real rows x [B, T, dim], in x's dtype."""
        if self._W is None:
            self.reset_stream()
        B, T, D = x.shape
        C = self.mini_batch_size
        XQ, XK, target, eta = self.inputs(x)
        outs = []
        for s in range(0, XQ.shape[2], C):
            n_real = min(C, T - s)
            sl = slice(s, s + C)
            step = padded_step(
                *self._W,
                self._W0,
                self._at_w0,
                self._gamma,
                self._beta,
                XQ[:, :, sl],
                XK[:, :, sl],
                target[:, :, sl],
                eta[:, :, sl],
                n_real,
                record=self.record,
                eps=MOSHI_LN_EPS,
                w0_sq=self._w0_sq,
            )
            outs.append(step.out)
            if self.record:
                self._losses.append(step.losses.reshape(-1, 3))
                self._signals.append(step.signals.reshape(-1, 1, 3).expand(-1, n_real, 3).reshape(-1, 3))
            if self.persist:
                self._W = (step.weights, step.biases)
                self._at_w0 = False
        z = torch.cat(outs, 2).transpose(1, 2).reshape(B, T, D).to(self.post_norm.weight.dtype)
        return self.wo(self.post_norm(z)).to(x.dtype)


def _project(x: torch.Tensor, m: nn.Linear) -> torch.Tensor:
    """A projection in the layer's dtype, then float32 (their inner loop runs in float32)."""
    return nn.functional.linear(x.to(m.weight.dtype), m.weight, m.bias).float()


def effective_gate(alpha: torch.Tensor, override: float | None = None) -> torch.Tensor:
    """``tanh(clamp(alpha, -3, 3))`` in float32; ``override`` replaces every alpha."""
    alpha = alpha.float()
    if override is not None:
        alpha = torch.full_like(alpha, float(override))
    return torch.tanh(alpha.clamp(-GATE_CLAMP, GATE_CLAMP))


class SSMGating(nn.Module):
    """``tanh(clamp(alpha, -3, 3)) * x`` per channel; ``override`` replaces alpha (``--gating-alpha``)."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.gating_alpha = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))
        self.override: float | None = None

    def gate(self) -> torch.Tensor:
        return effective_gate(self.gating_alpha, self.override)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.gate() * x.float()).to(x.dtype)


class _TTTWrapper(nn.Module):  # their ``ttt_layer`` level, so that keys read ``ttt_layer.ttt.*``
    def __init__(self, ttt: MoshiTTT):
        super().__init__()
        self.ttt = ttt


class HybridSeqModelingBlock(nn.Module):
    def __init__(self, ttt: MoshiTTT):
        super().__init__()
        self.ttt_layer = _TTTWrapper(ttt)
        self.forward_ssm_gating = SSMGating(ttt.dim, ttt.wq.weight.device, ttt.wq.weight.dtype)
        self.backward_ssm_gating = SSMGating(ttt.dim, ttt.wq.weight.device, ttt.wq.weight.dtype)  # unused, as theirs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """On the raw residual stream (no pre-norm): x + gate * TTT(x)."""
        return x + self.forward_ssm_gating(self.ttt_layer.ttt(x))


class TTTHybridLayer(StreamingModule[_LayerState]):
    """Replaces ``model.transformer.layers[L]``: Moshi's attention block, the gated TTT block, Moshi's
    feed-forward block. Moshi's layer stays a streaming child (theirs detaches it and starts its streaming by
    hand), so ``reset_streaming`` of the model also resets this layer's attention cache."""

    def __init__(self, original_layer: nn.Module, ttt: MoshiTTT, layer_id: int):
        super().__init__()
        self.original_layer = original_layer
        self.seq_modeling_block = HybridSeqModelingBlock(ttt)
        self.layer_id = layer_id

    @property
    def ttt(self) -> MoshiTTT:
        return self.seq_modeling_block.ttt_layer.ttt

    @property
    def gating(self) -> SSMGating:
        return self.seq_modeling_block.forward_ssm_gating

    def _init_streaming_state(self, batch_size: int) -> _LayerState:
        return _LayerState(batch_size, next(iter(self.parameters())).device, offset_cpu=0)

    def forward(self, x: torch.Tensor, cross_attention_src: torch.Tensor | None = None) -> torch.Tensor:
        layer = self.original_layer
        x = layer._sa_block(x)
        if getattr(layer, "cross_attention", None) is not None and cross_attention_src is not None:
            x = layer._cross_attention_block(x, cross_attention_src)
        x = self.seq_modeling_block(x)
        x = layer._ff_block(x)
        for st in (self._streaming_state, layer._streaming_state):
            if st is not None:
                st.offset_cpu += x.shape[1]
        return x
