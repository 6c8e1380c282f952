"""The inner loop of our users' Moshi-TTT layers: non-causal (video-dit), an inner MLP of any depth.

Their 3+-layer inner MLPs (``weights.i`` / ``biases.i``) are outside the 2-layer dual form of ``ttt.py``, so
this is the primal form: per mini-batch the weights ``W_b = W - sum_j lr_j g_j`` are built explicitly (every
gradient taken at the mini-batch's start weights, reference "One head, one mini-batch"), then both XQ (the
output) and XK (``lafter``) go through them. For two layers it equals ``inner_loop(causal=False)``.
Losses as in ``ttt.py``: MSE per element, mean over heads; l0 at W0, lprev at the start weights.

``MOSHI_LN_EPS``: their inner layer norm (``ops/utils.py``: ``ln_fwd``, ``ln_fused_l2_bwd``) uses 1e-8, not
the 1e-6 of ttt-lm-pytorch. It matters: their inner MLP starts at std 0.02, so its outputs have a variance
near 1e-8 and the epsilon changes the losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ttt import LN_EPS, _head_ln, _ln_fwd, _ln_residual_and_grad, gelu_tanh, gelu_tanh_grad

MOSHI_LN_EPS = 1e-8
SIGNAL_NAMES = ("grad_norm", "weight_change", "step_size")  # the columns of PaddedStep.signals


def mlp_forward(weights: list, biases: list, x: torch.Tensor):
    """f(x) = gelu(...gelu(x W0 + b0)...) W_n + b_n; returns (output, pre-activations, layer inputs)."""
    pre, inputs = [], []
    h = x
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        inputs.append(h)
        z = h @ W + b
        if i < len(weights) - 1:
            pre.append(z)
            h = gelu_tanh(z)
        else:
            h = z
    return h, pre, inputs


def _update(weights, biases, xk, tgt, lr, gamma, beta, eps=LN_EPS, grad_norm=False):
    """The non-causal step from these weights: W_i - sum_j lr_j dW_i^(j). Returns (new weights, new biases,
    the lprev residual, and with ``grad_norm`` the squared norm of the mean gradient (1/n) sum_j g_j over
    every inner tensor and head, per batch row)."""
    z, pre, inputs = mlp_forward(weights, biases, xk)
    resid, delta = _ln_residual_and_grad(z, tgt, gamma, beta, eps)  # delta: d(1/2 r)/dz, per token
    e = lr[..., None]  # [B, H, n, 1]
    new_w, new_b = [None] * len(weights), [None] * len(biases)
    grads = []
    for i in range(len(weights) - 1, -1, -1):
        new_w[i] = weights[i] - inputs[i].transpose(-1, -2) @ (e * delta)
        new_b[i] = biases[i] - (e * delta).sum(2, keepdim=True)
        if grad_norm:  # the unweighted sums; the 1/n comes once, at the end
            grads += [inputs[i].transpose(-1, -2) @ delta, delta.sum(2)]
        if i:
            delta = (delta @ weights[i].transpose(-1, -2)) * gelu_tanh_grad(pre[i - 1])
    sq = None
    if grad_norm:  # one fused norm over the list (few ops: this model's streaming step is dispatch-bound)
        sq = sq_norm(grads) / xk.shape[2] ** 2
    return new_w, new_b, resid, sq


def sq_norm(tensors: list) -> torch.Tensor:
    """Squared Frobenius norm over a list of tensors (batch size 1: one number)."""
    return torch.stack(torch._foreach_norm(tensors)).pow(2).sum()


def inner_loop_nonlinear_noncausal(
    weights, biases, ln_weight, ln_bias, XQ, XK, target, lr, mini_batch_size, W0=None, ln_eps=LN_EPS
):
    """weights[i]: [B|1, H, d_i, d_{i+1}], biases[i]: [B|1, H, 1, d_{i+1}]; XQ, XK, target: [B, H, T, d];
    lr: [B, H, T] (already carrying 1/b, as theirs). W0: (weights, biases) at the stream start (None: these).
    Returns (out [B,H,T,d], (weights, biases) after the last complete mini-batch, losses [B,T,3])."""
    gamma, beta = _head_ln(ln_weight, ln_bias)
    W0w, W0b = W0 if W0 is not None else (weights, biases)
    T, b = XQ.shape[2], int(mini_batch_size)
    outs, losses = [], []
    w, bs = list(weights), list(biases)
    for s in range(0, T, b):
        e = min(s + b, T)
        xq, xk, tgt = XQ[:, :, s:e], XK[:, :, s:e], target[:, :, s:e]
        nw, nb, resid, _ = _update(w, bs, xk, tgt, lr[:, :, s:e], gamma, beta, ln_eps)
        yq = _ln_fwd(mlp_forward(nw, nb, xq)[0], gamma, beta, ln_eps)[0]
        ya = _ln_fwd(mlp_forward(nw, nb, xk)[0], gamma, beta, ln_eps)[0]
        y0 = _ln_fwd(mlp_forward(W0w, W0b, xk)[0], gamma, beta, ln_eps)[0]
        outs.append(xq + yq)
        losses.append(torch.stack([(y0 - tgt), resid, (ya - tgt)], -1).pow(2).mean(3).mean(1))
        if e - s == b:  # only a complete mini-batch commits
            w, bs = nw, nb
    return torch.cat(outs, 2), (w, bs), torch.cat(losses, 1)


@dataclass
class PaddedStep:
    out: torch.Tensor  # [B, H, n, d]: XQ + LN(f(XQ; W_b)) of the n real rows
    weights: list  # W_b: the weights after this mini-batch's update
    biases: list
    losses: torch.Tensor | None  # [B, n, 3] (l0, lprev, lafter) of the real rows
    signals: torch.Tensor | None  # [1, 3]: mean-gradient norm, ||W_b - W0|| / ||W0||, mean step of the real rows


def padded_step(
    weights, biases, W0, at_w0, gamma, beta, XQ, XK, target, lr, n_real, record=True, eps=MOSHI_LN_EPS, w0_sq=None
):
    """One complete mini-batch of which only the first ``n_real`` rows are real tokens (Moshi-TTT's streaming:
    each call is right-padded to the mini-batch, reference "The layer they insert").

    Every row, pads included, takes part in the update (theirs does); outputs and losses are computed for the
    real rows only. ``at_w0``: the weights are still W0 (then l0 is lprev exactly, no extra forward);
    ``w0_sq``: ||W0||^2, constant over a stream (computed here when not given). Batch size 1 (a stream).
    """
    nw, nb, resid, gsq = _update(weights, biases, XK, target, lr, gamma, beta, eps, grad_norm=record)
    xq = XQ[:, :, :n_real]
    yq = _ln_fwd(mlp_forward(nw, nb, xq)[0], gamma, beta, eps)[0]
    out = xq + yq
    if not record:
        return PaddedStep(out, nw, nb, None, None)
    xk, tgt = XK[:, :, :n_real], target[:, :, :n_real]
    before = resid[:, :, :n_real]
    after = _ln_fwd(mlp_forward(nw, nb, xk)[0], gamma, beta, eps)[0] - tgt
    initial = before if at_w0 else _ln_fwd(mlp_forward(W0[0], W0[1], xk)[0], gamma, beta, eps)[0] - tgt
    losses = torch.stack([initial, before, after], -1).pow(2).mean(3).mean(1)
    num = sq_norm(torch._foreach_sub(nw + nb, W0[0] + W0[1]))
    den = sq_norm(W0[0] + W0[1]) if w0_sq is None else w0_sq
    signals = torch.stack([gsq.sqrt(), (num / den).sqrt(), lr[:, :, :n_real].mean()])[None]
    return PaddedStep(out, nw, nb, losses, signals)
