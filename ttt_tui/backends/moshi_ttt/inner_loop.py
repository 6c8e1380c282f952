"""The inner loop of our users' Moshi-TTT layers as their code computes it, and the Figure-5 losses.

Non-causal (video-dit), one update per mini-batch of ``C`` rows, every gradient taken at the mini-batch's
start weights ``W`` (docs/losses.md, "One head, one mini-batch"):
``dW = sum_j lr_j grad_W (1/2) r_j(W)``, where ``lr_j`` already carries their ``1/C``.

Their two classes differ in what the output sees (their ``moshi_ttt/models/ssm/ops/ttt_mlp.py``):

- the 2-layer ``TTTMLP`` (``compute_mini_batch``): ``XQ + LN(f(XQ; W - dW))``, in the dual form from ``W``;
- the N-layer ``TTTMLPMultiLayer`` (``compute_multi_layer_mini_batch``, lines 470-494): the same dual-form terms
  are subtracted from the *already updated* weights, so its output is ``XQ + LN(f(XQ; W - 2 dW))`` (the
  "double step"), while the weights it hands on are ``W - dW`` (lines 464-465).

``dual_step`` computes both (``double_step``), in the dual form as theirs, so that the rounding follows theirs
too; the tests hold it against an independent primal autograd reference. The layer norm here is written out
(mean, biased variance, ``sqrt(var + eps)``) with their epsilon ``1e-8`` (``ops/utils.py``), not the 1e-6 of
ttt-lm-pytorch: their inner MLP starts at std 0.02, its outputs have a variance near 1e-8, and the epsilon
changes the numbers.

``token_losses`` gives (l0, lprev, lafter) of the real rows in float32, whatever dtype the model runs in:
``l0`` at the stream-start weights, ``lprev`` at ``W``, ``lafter`` at ``W - dW`` (the weights the update hands
on, which the next mini-batch starts from: the paper's ``l(W_t; x_t)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ttt import gelu_tanh

LN_EPS = 1e-8
SIGNAL_NAMES = ("grad_norm", "weight_change", "step_size")  # the columns of ``step_signals``


def layer_norm(z: torch.Tensor, gamma, beta, eps: float = LN_EPS):
    """Per-head layer norm as their ``ln_fwd``; returns (y, xhat, std)."""
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    std = torch.sqrt(var + eps)
    xhat = (z - mu) / std
    return gamma * xhat + beta, xhat, std


def ln_l2_residual_and_grad(z: torch.Tensor, target, gamma, beta, eps: float = LN_EPS):
    """Residual ``LN(z) - target`` (lprev comes from it for free) and the gradient of ``1/2 ||residual||^2``
    with respect to ``z`` (the layer-norm backward)."""
    y, xhat, std = layer_norm(z, gamma, beta, eps)
    resid = y - target
    g = resid * gamma
    d = z.shape[-1]
    grad = (1.0 / d) * (d * g - g.sum(-1, keepdim=True) - xhat * (g * xhat).sum(-1, keepdim=True)) / std
    return resid, grad


_K = 0.79788456  # sqrt(2 / pi), as their ops/utils.py:gelu_bwd rounds it
_K3 = 0.1070322243  # 3 * 0.044715 * _K


def gelu_tanh_grad(x: torch.Tensor) -> torch.Tensor:
    """d/dx of the tanh-approximated gelu, evaluated in the order of their ``gelu_bwd``: in a stream whose
    weights are written back every frame, rounding differences compound, so the order matters."""
    t = torch.tanh(_K * x * (1 + 0.044715 * x * x))
    return 0.5 * x * ((1 - t * t) * (_K + _K3 * x * x)) + 0.5 * (1 + t)


def mlp(weights: list, biases: list, x: torch.Tensor) -> torch.Tensor:
    """f(x) = gelu(...gelu(x W_0 + b_0)...) W_n + b_n (tanh gelu between layers, none after the last)."""
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        x = x @ W + b
        if i < len(weights) - 1:
            x = gelu_tanh(x)
    return x


@dataclass
class DualStep:
    out: torch.Tensor  # [B, H, C, d]: XQ + LN(f(XQ; W - dW)) (2-layer) or W - 2 dW (N-layer)
    weights: list  # W - dW: what the next mini-batch starts from
    biases: list
    resid: torch.Tensor  # [B, H, C, d]: LN(f(XK; W)) - target, the lprev residual
    layer_inputs: list  # X_i of the forward at W (X_0 = XK)
    grads: list  # G_i = d(1/2 sum_j r_j)/dZ_i, per row


def dual_step(weights, biases, XQ, XK, target, lr, gamma, beta, double_step: bool, eps: float = LN_EPS) -> DualStep:
    """One mini-batch. weights[i]: [B, H, d_i, d_i+1], biases[i]: [B, H, 1, d_i+1]; XQ, XK, target: [B, H, C, d];
    lr: [B, H, C] per row (carrying 1/C); gamma, beta: [1, H, 1, d]. Everything in one dtype (the caller's)."""
    n = len(weights)
    xs, zs = [XK], []  # forward at W, keeping each layer's input X_i and pre-activation Z_i
    for i in range(n):
        zs.append(xs[i] @ weights[i] + biases[i])  # [B, H, C, d_i+1]
        if i < n - 1:
            xs.append(gelu_tanh(zs[i]))
    resid, g = ln_l2_residual_and_grad(zs[-1], target, gamma, beta, eps)
    grads = [g]
    for i in range(n - 2, -1, -1):  # backward through the hidden layers
        grads.insert(0, grads[0] @ weights[i + 1].transpose(-2, -1) * gelu_tanh_grad(zs[i]))
    e = lr[..., None]  # [B, H, C, 1]: row j's step
    new_w = [W - (e * x).transpose(-1, -2) @ G for W, x, G in zip(weights, xs, grads, strict=True)]
    new_b = [b - torch.sum(e * G, dim=-2, keepdim=True) for b, G in zip(biases, grads, strict=True)]
    # Dual form: f(XQ; W - dW) without building W - dW per query row. eta[i, j] = lr_j for every row i
    # (non-causal). The N-layer class starts these terms from the updated weights: W - 2 dW.
    eta = lr[..., None, :].expand(*lr.shape, lr.shape[-1])  # [B, H, C, C]
    ws, bs = (new_w, new_b) if double_step else (weights, biases)
    h = XQ
    for i in range(n):
        attn = h @ xs[i].transpose(-2, -1)  # [B, H, C, C]
        z = h @ ws[i] - (eta * attn) @ grads[i] + (bs[i] - eta @ grads[i])
        h = gelu_tanh(z) if i < n - 1 else z
    out = XQ + layer_norm(h, gamma, beta, eps)[0]
    return DualStep(out, new_w, new_b, resid, xs, grads)


def token_losses(step: DualStep, W0, XK, target, gamma, beta, n_real: int, at_w0: bool, weights, biases):
    """(l0, lprev, lafter) of the first ``n_real`` rows, [B, n_real, 3] in float32: MSE per element, mean over
    heads. ``W0``: (weights, biases) at the stream start; ``weights, biases``: the step's start weights W;
    ``at_w0``: W is W0 (then l0 is lprev exactly). In float32 already, the lprev residual is reused."""
    f32 = lambda ts: [t.float() for t in ts]  # noqa: E731
    xk, tgt = XK[:, :, :n_real].float(), target[:, :, :n_real].float()
    g, b = gamma.float(), beta.float()

    def resid(ws, bs):
        return layer_norm(mlp(f32(ws), f32(bs), xk), g, b)[0] - tgt

    before = step.resid[:, :, :n_real] if step.resid.dtype == torch.float32 else resid(weights, biases)
    after = resid(step.weights, step.biases)
    initial = before if at_w0 else resid(*W0)
    return torch.stack([initial, before, after], -1).pow(2).mean(3).mean(1)


def sq_norm(tensors: list) -> torch.Tensor:
    """Squared Frobenius norm over a list of tensors (one number: a stream has batch size 1)."""
    return torch.stack(torch._foreach_norm(tensors)).pow(2).sum()


def step_signals(step: DualStep, W0, w0_sq, lr, n_real: int) -> torch.Tensor:
    """[1, 3]: the norm of the mean gradient (1/C) sum_j g_j over every inner tensor, ``||W - dW - W0|| / ||W0||``,
    the mean step size of the real rows. In float32, on the device."""
    C = lr.shape[-1]
    grads = [x.float().transpose(-1, -2) @ G.float() for x, G in zip(step.layer_inputs, step.grads, strict=True)]
    grads += [G.float().sum(2) for G in step.grads]
    gsq = sq_norm(grads) / C**2
    change = sq_norm(torch._foreach_sub([t.float() for t in step.weights + step.biases], W0[0] + W0[1]))
    return torch.stack([gsq.sqrt(), (change / w0_sq).sqrt(), lr[:, :, :n_real].float().mean()])[None]
