"""The Moshi-TTT inner loop (their semantics) against an independent primal reference with autograd.

What is mirrored (public repo AlufRon/claude-web, ``moshi_ttt_try/moshi-finetune/moshi_ttt/models/ssm/``):
- ``ops/ttt_mlp.py:113-256`` (``compute_mini_batch``, 2 layers): output at W - dW, dual form from W;
- ``ops/ttt_mlp.py:393-506`` (``compute_multi_layer_mini_batch``, N layers): the dual-form terms are subtracted
  from the already-updated weights (lines 470-494), so the output sees W - 2 dW, while W - dW (lines 464-465) is
  handed on (written back at ``ttt_layer.py:592-594``);
- ``ops/utils.py:5-76``: the inner layer norm with eps 1e-8 and a biased variance.
"""

import pytest
import torch

from ttt_tui.backends.moshi_ttt.inner_loop import dual_step, step_signals, token_losses


def make(dims, B=2, H=2, C=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    d = dims[0]
    ws = [
        torch.randn(B, H, dims[i], dims[i + 1], generator=g, dtype=dtype) / dims[i] ** 0.5 for i in range(len(dims) - 1)
    ]
    bs = [0.1 * torch.randn(B, H, 1, dims[i + 1], generator=g, dtype=dtype) for i in range(len(dims) - 1)]
    gamma = (1 + 0.1 * torch.randn(H, d, generator=g, dtype=dtype))[None, :, None]
    beta = (0.1 * torch.randn(H, d, generator=g, dtype=dtype))[None, :, None]
    XQ, XK, tgt = (torch.randn(B, H, C, d, generator=g, dtype=dtype) for _ in range(3))
    lr = 0.2 * torch.rand(B, H, C, generator=g, dtype=dtype)
    return ws, bs, gamma, beta, XQ, XK, tgt, lr


def ref_ln(z, gamma, beta, eps=1e-8):
    mu, var = z.mean(-1, keepdim=True), z.var(-1, keepdim=True, unbiased=False)
    return gamma * (z - mu) / torch.sqrt(var + eps) + beta


def ref_mlp(ws, bs, x):
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        x = x @ w + b
        if i < len(ws) - 1:
            x = torch.nn.functional.gelu(x, approximate="tanh")
    return x


def primal_reference(ws, bs, gamma, beta, XQ, XK, tgt, lr, double_step):
    """The update built explicitly: dW = grad of sum_j lr_j (1/2) r_j(W) at the start weights, by autograd
    (every (batch, head) has its own weights, so one backward gives every head's gradient). Output at W - dW,
    or W - 2 dW for their N-layer class; returns (out, W - dW, b - db, lprev residual)."""
    gamma, beta, XQ, XK, tgt, lr = (t.detach() for t in (gamma, beta, XQ, XK, tgt, lr))
    with torch.enable_grad():
        p = [t.detach().clone().requires_grad_(True) for t in ws + bs]
        r = ref_ln(ref_mlp(p[: len(ws)], p[len(ws) :], XK), gamma, beta) - tgt
        grads = torch.autograd.grad((lr[..., None] * 0.5 * r.pow(2)).sum(), p)
    new = [t.detach() - g for t, g in zip(p, grads, strict=True)]
    k = 2.0 if double_step else 1.0
    used = [t.detach() - k * g for t, g in zip(p, grads, strict=True)]
    out = XQ + ref_ln(ref_mlp(used[: len(ws)], used[len(ws) :], XQ), gamma, beta)
    return out, new[: len(ws)], new[len(ws) :], r.detach()


@pytest.mark.parametrize("dims", [[8, 32, 8], [8, 16, 12, 8], [8, 32, 32, 32, 8]])
@pytest.mark.parametrize("double_step", [False, True])
def test_dual_step_equals_the_primal_update(dims, double_step):
    ws, bs, gamma, beta, XQ, XK, tgt, lr = make(dims)
    step = dual_step(ws, bs, XQ, XK, tgt, lr, gamma, beta, double_step)
    out, nw, nb, resid = primal_reference(ws, bs, gamma, beta, XQ, XK, tgt, lr, double_step)
    # float64; 1e-7, not 1e-12: their gelu backward (ops/utils.py:79-82), which we follow, rounds sqrt(2/pi) to
    # 0.79788456, so their gradient differs from the exact one (autograd's) by about 1e-9 relative
    tol = {"rtol": 1e-7, "atol": 1e-9}
    torch.testing.assert_close(step.out, out, **tol)
    for a, b in zip(step.weights + step.biases, nw + nb, strict=True):
        torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(step.resid, resid, rtol=1e-12, atol=1e-14)  # the forward: exact
    single = primal_reference(ws, bs, gamma, beta, XQ, XK, tgt, lr, not double_step)[0]
    assert (single - out).abs().max() > 1e-3  # the double step is a different function


def test_token_losses_are_l0_lprev_lafter_of_the_real_rows():
    ws, bs, gamma, beta, XQ, XK, tgt, lr = make([8, 16, 12, 8], B=1)
    W0 = ([w + 0.05 for w in ws], [b - 0.05 for b in bs])
    step = dual_step(ws, bs, XQ, XK, tgt, lr, gamma, beta, True)
    n = 2
    got = token_losses(step, W0, XK, tgt, gamma, beta, n, False, ws, bs)

    def mse(w, b):
        return (ref_ln(ref_mlp(w, b, XK[:, :, :n]), gamma, beta) - tgt[:, :, :n]).pow(2).mean(-1).mean(1)

    # lafter at the weights handed on (W - dW), not at the double step's W - 2 dW
    want = torch.stack([mse(*W0), mse(ws, bs), mse(step.weights, step.biases)], -1)
    assert got.dtype == torch.float32 and got.shape == (1, n, 3)
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-7)
    at_w0 = token_losses(step, W0, XK, tgt, gamma, beta, n, True, ws, bs)
    assert torch.equal(at_w0[..., 0], at_w0[..., 1])  # at the stream start, l0 is lprev exactly


def test_signals_are_the_inner_quantities():
    ws, bs, gamma, beta, XQ, XK, tgt, lr = make([8, 32, 8], B=1, C=4)
    step = dual_step(ws, bs, XQ, XK, tgt, lr, gamma, beta, False)
    W0 = ([w.float() for w in ws], [b.float() for b in bs])
    w0_sq = sum(t.pow(2).sum() for t in W0[0] + W0[1])
    sig = step_signals(step, W0, w0_sq, lr, 1)
    p = [t.detach().clone().requires_grad_(True) for t in ws + bs]
    r = ref_ln(ref_mlp(p[:2], p[2:], XK), gamma, beta) - tgt
    grads = torch.autograd.grad((0.5 * r.pow(2)).sum() / 4, p)  # the gradient of the mini-batch mean loss
    gn = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    change = torch.sqrt(sum((a - b).pow(2).sum() for a, b in zip(step.weights + step.biases, ws + bs, strict=True)))
    torch.testing.assert_close(sig[0, 0].double(), gn, rtol=1e-5, atol=0)
    torch.testing.assert_close(sig[0, 1].double(), change / w0_sq.double().sqrt(), rtol=1e-5, atol=0)
    torch.testing.assert_close(sig[0, 2].double(), lr[:, :, :1].mean(), rtol=1e-6, atol=0)


def test_their_layer_norm_epsilon_matters():
    """Their inner MLP starts at std 0.02: its outputs have a variance near 1e-8, where 1e-8 and 1e-6 differ."""
    ws, bs, gamma, beta, XQ, XK, tgt, lr = make([8, 32, 8], B=1)
    ws = [0.02 * torch.randn_like(w) / w.shape[-2] ** -0.5 for w in ws]
    bs = [torch.zeros_like(b) for b in bs]
    ours = dual_step(ws, bs, XQ, XK, tgt, lr, gamma, beta, False)
    other = dual_step(ws, bs, XQ, XK, tgt, lr, gamma, beta, False, eps=1e-6)
    assert (ours.resid - other.resid).abs().max() > 1e-3
