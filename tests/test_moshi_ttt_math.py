"""The N-layer non-causal inner loop (their Moshi-TTT layers) against the 2-layer dual form and autograd."""

import pytest
import torch

from ttt_tui.backends.moshi_ttt_math import inner_loop_nonlinear_noncausal
from ttt_tui.ttt import inner_loop


def make(dims, B=2, H=2, T=21, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = dims[0]
    ws = [
        torch.randn(B, H, dims[i], dims[i + 1], generator=g, dtype=torch.float64) / dims[i] ** 0.5
        for i in range(len(dims) - 1)
    ]
    bs = [0.1 * torch.randn(B, H, 1, dims[i + 1], generator=g, dtype=torch.float64) for i in range(len(dims) - 1)]
    lnw = 1 + 0.1 * torch.randn(H, d, generator=g, dtype=torch.float64)
    lnb = 0.1 * torch.randn(H, d, generator=g, dtype=torch.float64)
    XQ, XK, tgt = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) for _ in range(3))
    lr = 0.1 * torch.rand(B, H, T, generator=g, dtype=torch.float64)
    return ws, bs, lnw, lnb, XQ, XK, tgt, lr


def test_two_layers_equal_the_dual_form():
    ws, bs, lnw, lnb, XQ, XK, tgt, lr = make([8, 32, 8])
    W0 = ([w + 0.05 for w in ws], [b - 0.05 for b in bs])
    out, (w2, b2), losses = inner_loop_nonlinear_noncausal(ws, bs, lnw, lnb, XQ, XK, tgt, lr, 4, W0=W0)
    params = {"W1": ws[0], "b1": bs[0], "W2": ws[1], "b2": bs[1]}
    w0 = {"W1": W0[0][0], "b1": W0[1][0], "W2": W0[0][1], "b2": W0[1][1]}
    ref = inner_loop("mlp", params, lnw, lnb, XQ, XK, tgt, lr, 4, causal=False, W0=w0)
    torch.testing.assert_close(out, ref.out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses, ref.losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w2[1], ref.params["W2"], rtol=1e-10, atol=1e-12)


def ref_mlp(ws, bs, x):
    """Independent forward: gelu (tanh form) between layers, none after the last."""
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        x = x @ w + b
        if i < len(ws) - 1:
            x = torch.nn.functional.gelu(x, approximate="tanh")
    return x


def _autograd_reference(ws, bs, lnw, lnb, XQ, XK, tgt, lr, b):
    """Token by token, one head at a time, gradients by autograd: W_b = W - sum_j lr_j grad 1/2 r_j(W)."""
    B, H, T, d = XQ.shape

    def ln(z, h):
        mu, var = z.mean(-1, keepdim=True), z.var(-1, keepdim=True, unbiased=False)
        return lnw[h] * (z - mu) / torch.sqrt(var + 1e-6) + lnb[h]

    out = torch.zeros_like(XQ)
    losses = torch.zeros(B, H, T, 3, dtype=XQ.dtype)
    for bb in range(B):
        for h in range(H):
            w = [x[bb, h].clone() for x in ws]
            bi = [x[bb, h, 0].clone() for x in bs]
            w0, b0 = [x.clone() for x in w], [x.clone() for x in bi]
            for s in range(0, T, b):
                e = min(s + b, T)
                gw = [torch.zeros_like(x) for x in w]
                gb = [torch.zeros_like(x) for x in bi]
                for j in range(s, e):
                    pw = [x.clone().requires_grad_(True) for x in w]
                    pb = [x.clone().requires_grad_(True) for x in bi]
                    z = ref_mlp(pw, pb, XK[bb, h, j])
                    r = 0.5 * ((ln(z, h) - tgt[bb, h, j]) ** 2).sum()
                    grads = torch.autograd.grad(r, pw + pb)
                    for i in range(len(w)):
                        gw[i] += lr[bb, h, j] * grads[i]
                        gb[i] += lr[bb, h, j] * grads[len(w) + i]
                nw = [x - g for x, g in zip(w, gw, strict=True)]
                nb = [x - g for x, g in zip(bi, gb, strict=True)]
                for i in range(s, e):
                    out[bb, h, i] = XQ[bb, h, i] + ln(ref_mlp(nw, nb, XQ[bb, h, i]), h)
                    for c, (ww, bbias) in enumerate(((w0, b0), (w, bi), (nw, nb))):
                        y = ln(ref_mlp(ww, bbias, XK[bb, h, i]), h)
                        losses[bb, h, i, c] = ((y - tgt[bb, h, i]) ** 2).mean()
                if e - s == b:
                    w, bi = nw, nb
    return out, losses.mean(1)


@pytest.mark.parametrize("dims", [[8, 16, 12, 8], [8, 32, 32, 32, 8]])
def test_deeper_inner_mlps_equal_autograd(dims):
    ws, bs, lnw, lnb, XQ, XK, tgt, lr = make(dims, T=11)
    out, _, losses = inner_loop_nonlinear_noncausal(ws, bs, lnw, lnb, XQ, XK, tgt, lr, 4)
    ref_out, ref_losses = _autograd_reference(ws, bs, lnw, lnb, XQ, XK, tgt, lr, 4)
    assert (ref_losses[..., 1] - ref_losses[..., 2]).abs().max() > 1e-3  # the step really changes things
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-9, atol=1e-11)
    assert torch.equal(losses[:, :4, 0], losses[:, :4, 1])  # first mini-batch: l0 is lprev
