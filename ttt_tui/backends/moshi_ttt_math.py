"""The inner loop of our users' Moshi-TTT layers: non-causal (video-dit), an inner MLP of any depth.

Their 3+-layer inner MLPs (``weights.i`` / ``biases.i``) are outside the 2-layer dual form of ``ttt.py``, so
this is the primal form: per mini-batch the weights ``W_b = W - sum_j lr_j g_j`` are built explicitly (every
gradient taken at the mini-batch's start weights, reference "One head, one mini-batch"), then both XQ (the
output) and XK (``lafter``) go through them. For two layers it equals ``inner_loop(causal=False)``.
Losses as in ``ttt.py``: MSE per element, mean over heads; l0 at W0, lprev at the start weights.
"""

from __future__ import annotations

import torch

from ..ttt import _head_ln, _ln_fwd, _ln_residual_and_grad, gelu_tanh, gelu_tanh_grad


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


def _update(weights, biases, xk, tgt, lr, gamma, beta):
    """The non-causal step from these weights: W_i - sum_j lr_j dW_i^(j). Returns (new weights, new biases,
    the lprev residual)."""
    z, pre, inputs = mlp_forward(weights, biases, xk)
    resid, delta = _ln_residual_and_grad(z, tgt, gamma, beta)  # delta: d(1/2 r)/dz, per token
    e = lr[..., None]  # [B, H, n, 1]
    new_w, new_b = [None] * len(weights), [None] * len(biases)
    for i in range(len(weights) - 1, -1, -1):
        new_w[i] = weights[i] - inputs[i].transpose(-1, -2) @ (e * delta)
        new_b[i] = biases[i] - (e * delta).sum(2, keepdim=True)
        if i:
            delta = (delta @ weights[i].transpose(-1, -2)) * gelu_tanh_grad(pre[i - 1])
    return new_w, new_b, resid


def inner_loop_nonlinear_noncausal(weights, biases, ln_weight, ln_bias, XQ, XK, target, lr, mini_batch_size, W0=None):
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
        nw, nb, resid = _update(w, bs, xk, tgt, lr[:, :, s:e], gamma, beta)
        yq = _ln_fwd(mlp_forward(nw, nb, xq)[0], gamma, beta)[0]
        ya = _ln_fwd(mlp_forward(nw, nb, xk)[0], gamma, beta)[0]
        y0 = _ln_fwd(mlp_forward(W0w, W0b, xk)[0], gamma, beta)[0]
        outs.append(xq + yq)
        losses.append(torch.stack([(y0 - tgt), resid, (ya - tgt)], -1).pow(2).mean(3).mean(1))
        if e - s == b:  # only a complete mini-batch commits
            w, bs = nw, nb
    return torch.cat(outs, 2), (w, bs), torch.cat(losses, 1)
