"""The TTT layer our users insert into Moshi, computing what their code computes, recording per real token
the three Figure-5 losses and the inner-loop signals.

Module and parameter names follow their checkpoints, so that a layer's state dict has their keys:
``transformer.layers.L.original_layer.*`` (Moshi's layer) and
``transformer.layers.L.seq_modeling_block.{ttt_layer.ttt.*, forward_ssm_gating.gating_alpha, ...}``.

What their inference runs (public repo AlufRon/claude-web, ``moshi_ttt_try/moshi-finetune/``):

- the hybrid layer (``moshi_ttt/hybrid_layer.py``): Moshi's attention block, then on the raw residual stream
  ``x + tanh(clamp(alpha, -3, 3)) * TTT(x)``, then Moshi's feed-forward block;
- ``TTT(x)`` is ``TTTWrapper.forward`` (``moshi_ttt/models/ssm/ttt_layer.py:80-117``): the merged heads of
  ``XQ + LN(f(XQ; W'))``. No ``post_norm``, no ``wo``: only the unused ``TTTBase.forward`` applies them, so this
  layer has neither (the checkpoint's copies are skipped at load and named in the model audit);
- each call is right-padded with zero rows to a whole mini-batch (``hybrid_layer.py:331-346``); the pad rows
  take part in the update; Q/K/V, the target and the step sizes come from their ``process_input`` and
  ``get_eta``, in the model's dtype; the 2-layer inner loop runs in float32, the N-layer one in the model's
  dtype (their ops cast only in the former);
- the 2-layer class never hands its update on to the next call; the N-layer class writes it back (eval) and
  its output takes a double step (see ``inner_loop``).

Losses and signals stay on the device and are copied in blocks (``take``): no host synchronisation per frame.
"""

from __future__ import annotations

import torch
from moshi.modules.streaming import StreamingModule
from moshi.modules.transformer import _LayerState
from torch import nn

from ...recording import StepRecorder
from .inner_loop import dual_step, sq_norm, step_signals, token_losses

TARGET_EPS = 1e-5  # their ln_reconstruction_target: (x - mean) / (unbiased std + 1e-5)
GATE_CLAMP = 3.0


def audio_rope(head_dim: int, n: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [n, head_dim/2] of their 1-D audio RoPE (``audio_scaling=True``): inverse frequencies
    ``1 / theta^(2i/d)`` scaled by ``0.5 + 1.5 exp(-2i / 2d)``, in float32."""
    i2 = torch.arange(0, head_dim, 2, dtype=torch.float32)
    freqs = 1.0 / (theta ** (i2 / head_dim)) * (0.5 + 1.5 * torch.exp(-i2 / (head_dim * 2)))
    angles = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1) of the last dim in float32 (theirs goes through complex float32);
    x [B, H, n, d], cos/sin [n, d/2]; back in x's dtype."""
    a, b = x.float()[..., 0::2], x.float()[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2).to(x.dtype)


class MoshiTTT(nn.Module):
    """Their TTT-MLP (``TTTMLP`` for 2 inner layers, ``TTTMLPMultiLayer`` for more), non-causal.

    ``write_back``: each call starts from the weights the previous one handed on (theirs: the N-layer class;
    ``--ttt-persist`` for the 2-layer class); otherwise every call starts from the checkpoint's weights.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dims: list[int],
        base_lr: float,
        mini_batch_size: int,
        use_rope: bool = False,
        rope_theta: float = 10000.0,
        write_back: bool | None = None,
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
        self.wq, self.wk, self.wv = (nn.Linear(dim, dim, bias=True, **fk) for _ in range(3))
        self.learnable_ttt_lr_weight = nn.Parameter(torch.zeros(H, 1, dim, **fk))
        self.learnable_ttt_lr_bias = nn.Parameter(torch.zeros(H, 1, **fk))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, self.head_dim, **fk))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, self.head_dim, **fk))
        shapes = [(H, a, b) for a, b in zip(self.mlp_dims[:-1], self.mlp_dims[1:], strict=True)]
        self.multi_layer = len(shapes) > 2
        if not self.multi_layer:  # their TTTMLP: W1, b1, W2, b2
            self.W1 = nn.Parameter(torch.zeros(*shapes[0], **fk))
            self.b1 = nn.Parameter(torch.zeros(H, 1, shapes[0][2], **fk))
            self.W2 = nn.Parameter(torch.zeros(*shapes[1], **fk))
            self.b2 = nn.Parameter(torch.zeros(H, 1, shapes[1][2], **fk))
        else:  # their TTTMLPMultiLayer: weights.i, biases.i
            self.weights = nn.ParameterList([nn.Parameter(torch.zeros(*s, **fk)) for s in shapes])
            self.biases = nn.ParameterList([nn.Parameter(torch.zeros(H, 1, s[2], **fk)) for s in shapes])
        self.double_step = self.multi_layer  # their N-layer output uses W - 2 dW
        self.write_back = self.multi_layer if write_back is None else bool(write_back)
        self.record = True
        self._W: tuple[list, list] | None = None
        self._recorded = StepRecorder()  # per step: losses [n, 3], signals [n, 3]

    # -- inner weights ----------------------------------------------------------------------------------
    def checkpoint_weights(self) -> tuple[list, list]:
        if not self.multi_layer:
            return [self.W1, self.W2], [self.b1, self.b2]
        return list(self.weights), list(self.biases)

    @property
    def inner_dtype(self) -> torch.dtype:
        """Their 2-layer ops cast to float32; their N-layer ops run in the model's dtype."""
        return self.ttt_norm_weight.dtype if self.multi_layer else torch.float32

    def reset_stream(self) -> None:
        """Stream start: the inner weights are the checkpoint's."""
        w, b = self.checkpoint_weights()
        self._W = ([t.detach()[None] for t in w], [t.detach()[None] for t in b])  # the model's dtype
        self._W0_f32 = ([t.float() for t in self._W[0]], [t.float() for t in self._W[1]])
        self._w0_sq = sq_norm(self._W0_f32[0] + self._W0_f32[1])
        self._at_w0 = True
        self._recorded.clear()

    def take(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Losses [n, 3] and signals [n, 3] recorded since the last call, still on the device."""
        return self._recorded.take("losses", "signals")

    # -- the block --------------------------------------------------------------------------------------
    def _rope_table(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions 0..C-1, made once per device (no host-to-device copy per frame)."""
        table = getattr(self, "_rope", None)
        if table is None or table[0].device != torch.device(device):
            cos, sin = audio_rope(self.head_dim, self.mini_batch_size, self.rope_theta)
            self._rope = table = (cos.to(device), sin.to(device))
        return table

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [B, L, dim] -> [B, H, L, d]
        B, L, _ = t.shape
        return t.reshape(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def inputs(self, x: torch.Tensor):
        """XQ, XK, XV' (``LN(XV - XK) + XK``, their ``ln_reconstruction_target``) [B, H, L, d] and the step sizes
        eta [B, H, L] (carrying 1/C), in the layer's dtype, for ``x`` [B, T, dim] right-padded with zero rows
        to L, a multiple of the mini-batch (their hybrid layer)."""
        B, T, D = x.shape
        C = self.mini_batch_size
        L = -(-T // C) * C
        x = x.to(self.wq.weight.dtype)
        if L > T:
            x = torch.cat([x, x.new_zeros(B, L - T, D)], 1)
        XQ, XK, XV = (self._heads(m(x)) for m in (self.wq, self.wk, self.wv))
        XQ, XK = nn.functional.normalize(XQ, p=2, dim=-1), nn.functional.normalize(XK, p=2, dim=-1)
        if self.use_rope:  # positions arange(L) % C, as theirs: L is a multiple of C, so the table repeats
            cos, sin = (t.repeat(L // C, 1) for t in self._rope_table(x.device))
            XQ, XK = apply_rope(XQ, cos, sin), apply_rope(XK, cos, sin)
        r = XV - XK
        r = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + TARGET_EPS)
        XV = self.ttt_norm_weight[None, :, None] * r + self.ttt_norm_bias[None, :, None] + XK
        logit = torch.einsum("blc,hc->bhl", x, self.learnable_ttt_lr_weight[:, 0]) + self.learnable_ttt_lr_bias[None]
        eta = (1 / C) * (self.base_lr * torch.sigmoid(logit) / self.head_dim)
        return XQ, XK, XV, eta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """TTT(x) for the real rows x [B, T, dim]: the merged heads, in the layer's dtype."""
        if self._W is None:
            self.reset_stream()
        B, T, D = x.shape
        C = self.mini_batch_size
        cd = self.inner_dtype
        XQ, XK, XV, eta = (t.to(cd) for t in self.inputs(x))
        target = XV - XK  # their compute_mini_batch: the target from XV' after the cast
        gamma = self.ttt_norm_weight.to(cd)[None, :, None]
        beta = self.ttt_norm_bias.to(cd)[None, :, None]
        pdt = self.ttt_norm_weight.dtype
        W, Wb = self._W
        at_w0 = self._at_w0
        outs = []
        for s in range(0, XQ.shape[2], C):
            n_real = min(C, T - s)
            sl = slice(s, s + C)
            xk, tgt, lr = XK[:, :, sl], target[:, :, sl], eta[:, :, sl]
            w, b = [t.to(cd) for t in W], [t.to(cd) for t in Wb]
            step = dual_step(w, b, XQ[:, :, sl], xk, tgt, lr, gamma, beta, self.double_step)
            outs.append(step.out[:, :, :n_real])
            if self.record:
                losses = token_losses(step, self._W0_f32, xk, tgt, gamma, beta, n_real, at_w0, w, b)
                sig = step_signals(step, self._W0_f32, self._w0_sq, lr, n_real)
                self._recorded.add(
                    losses=losses.reshape(-1, 3), signals=sig.reshape(-1, 1, 3).expand(-1, n_real, 3).reshape(-1, 3)
                )
            # within a call their scan carries the weights on, in the parameters' dtype
            W, Wb = [t.to(pdt) for t in step.weights], [t.to(pdt) for t in step.biases]
            at_w0 = False
        if self.write_back:
            self._W, self._at_w0 = (W, Wb), at_w0
        z = torch.cat(outs, 2).to(pdt)  # their output .to(input dtype): the parameters'
        return z.transpose(1, 2).reshape(B, T, D)


def effective_gate(alpha: torch.Tensor, override: float | None = None) -> torch.Tensor:
    """``tanh(clamp(alpha, -3, 3))`` in alpha's dtype; ``override`` replaces every alpha."""
    if override is not None:
        alpha = torch.full_like(alpha, float(override))
    return torch.tanh(torch.clamp(alpha, -GATE_CLAMP, GATE_CLAMP))


class SSMGating(nn.Module):
    """``tanh(clamp(alpha, -3, 3)) * x`` per channel, in the parameter's dtype as theirs; ``override``
    replaces alpha (``--gating-alpha``)."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.gating_alpha = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))
        self.override: float | None = None

    def gate(self) -> torch.Tensor:
        return effective_gate(self.gating_alpha, self.override)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate() * x


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
        """On the raw residual stream (no pre-norm): x + gate * TTT(x), the sum in x's dtype."""
        return x + self.forward_ssm_gating(self.ttt_layer.ttt(x)).to(x.dtype)


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
