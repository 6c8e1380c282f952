"""Our Moshi-TTT block, frame by frame as Moshi streams it, against the inner-loop references on the same
tensors: ``inner_loop(causal=False)`` (2 layers) and the autograd-checked N-layer loop (3 layers)."""

import pytest
import torch

from ttt_tui.backends.moshi_ttt_block import MoshiTTT
from ttt_tui.backends.moshi_ttt_math import inner_loop_nonlinear_noncausal
from ttt_tui.ttt import inner_loop

D, H, C = 32, 4, 8


def make_block(mlp_layers=2, persist=None, use_rope=False, seed=0):
    torch.manual_seed(seed)
    hd = D // H
    dims = [hd] + [4 * hd] * (mlp_layers - 1) + [hd]
    m = MoshiTTT(D, H, dims, base_lr=3.0, mini_batch_size=C, use_rope=use_rope, persist=persist)
    inner = {id(p) for p in sum(m.checkpoint_weights(), [])}
    with torch.no_grad():
        for p in m.parameters():  # the inner MLP at their init scale (std 0.02): f's outputs are then small
            p.copy_(torch.randn_like(p) * (0.02 if id(p) in inner else 0.3 if p.dim() > 1 else 0.1))
        m.ttt_norm_weight.add_(1.0)  # enough that the inner layer norm's epsilon (1e-8 vs 1e-6) shows
    return m


def reference_inputs(m, x):
    """Written apart from the block: the padded call's XQ, XK, target and eta, per their TTTBase."""
    B, T, D = x.shape
    H, C = m.num_heads, m.mini_batch_size
    xp = torch.cat([x, torch.zeros(B, C - T, D)], 1)
    hd = D // H

    def heads(t):
        return t.view(B, C, H, hd).permute(0, 2, 1, 3)

    q, k, v = heads(m.wq(xp)), heads(m.wk(xp)), heads(m.wv(xp))
    q = q / q.norm(dim=-1, keepdim=True)
    k = k / k.norm(dim=-1, keepdim=True)
    if m.use_rope:
        i = torch.arange(0, hd, 2).float()
        f = 10000.0 ** (-i / hd) * (0.5 + 1.5 * torch.exp(-i / (2 * hd)))
        ang = torch.arange(C).float()[:, None] * f
        rot = torch.polar(torch.ones_like(ang), ang)

        def rope(t):
            c = torch.view_as_complex(t.reshape(*t.shape[:-1], -1, 2).contiguous())
            return torch.view_as_real(c * rot).flatten(-2)

        q, k = rope(q), rope(k)
    r = v - k
    r = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-5)
    tgt = m.ttt_norm_weight[None, :, None] * r + m.ttt_norm_bias[None, :, None]
    lr = torch.sigmoid((xp @ m.learnable_ttt_lr_weight[:, 0].T).permute(0, 2, 1) + m.learnable_ttt_lr_bias)
    return q, k, tgt, m.base_lr * lr / hd / C


def reference_call(m, x, weights, biases, W0):
    C = m.mini_batch_size
    XQ, XK, tgt, eta = reference_inputs(m, x)
    lnw, lnb = m.ttt_norm_weight, m.ttt_norm_bias
    if len(weights) == 2:
        p = {"W1": weights[0], "b1": biases[0], "W2": weights[1], "b2": biases[1]}
        p0 = {"W1": W0[0][0], "b1": W0[1][0], "W2": W0[0][1], "b2": W0[1][1]}
        res = inner_loop("mlp", p, lnw, lnb, XQ, XK, tgt, eta, C, causal=False, W0=p0, ln_eps=1e-8)
        return res.out, [res.params["W1"], res.params["W2"]], [res.params["b1"], res.params["b2"]], res.losses
    out, (w, b), losses = inner_loop_nonlinear_noncausal(
        weights, biases, lnw, lnb, XQ, XK, tgt, eta, C, W0=W0, ln_eps=1e-8
    )
    return out, w, b, losses


@pytest.mark.parametrize("mlp_layers", [2, 3])
@pytest.mark.parametrize("persist", [None, True, False])
def test_streamed_frames_equal_the_reference(mlp_layers, persist):
    m = make_block(mlp_layers, persist, use_rope=(mlp_layers == 3))
    assert m.persist == (mlp_layers > 2 if persist is None else persist)
    m.reset_stream()
    w0, b0 = m.checkpoint_weights()
    W0 = ([t.detach()[None] for t in w0], [t.detach()[None] for t in b0])
    w, b = W0
    torch.manual_seed(1)
    frames = [torch.randn(1, 1, D) for _ in range(5)]
    got, want = [], []
    with torch.no_grad():
        for x in frames:
            y = m(x)
            out, nw, nb, losses = reference_call(m, x, w, b, W0)
            if m.persist:
                w, b = nw, nb
            z = out[:, :, :1].transpose(1, 2).reshape(1, 1, D)
            torch.testing.assert_close(y, m.wo(m.post_norm(z)), rtol=1e-4, atol=1e-5)
            want.append(losses[0, :1])  # the real token only
        got, signals = m.take()
    want = torch.cat(want)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert signals.shape == (5, 3) and torch.isfinite(signals).all()
    if not m.persist:  # every call restarts from the checkpoint weights: lprev == l0 exactly
        assert torch.equal(got[:, 0], got[:, 1])
    else:  # the weights move: after the first frame l0 differs from lprev
        assert torch.equal(got[0, 0], got[0, 1]) and not torch.allclose(got[1:, 0], got[1:, 1])
        assert (signals[1:, 1] > signals[0, 1]).all()  # ||W_t - W0|| / ||W0|| grows


def test_signals_are_the_inner_quantities():
    m = make_block(2, persist=False)
    m.reset_stream()
    x = torch.randn(1, 1, D)
    with torch.no_grad():
        m(x)
        _, sig = m.take()
        XQ, XK, tgt, eta = reference_inputs(m, x)
    # mean step size of the real token: base_lr * sigmoid(.) / hd / C, averaged over heads
    torch.testing.assert_close(sig[0, 2], eta[0, :, 0].mean(), rtol=1e-5, atol=0)
    # gradient norm: autograd of mean_j 1/2 r_j over the padded mini-batch
    W = [p.detach().clone().requires_grad_(True) for p in (m.W1, m.b1, m.W2, m.b2)]
    z = torch.nn.functional.gelu(XK @ W[0] + W[1], approximate="tanh") @ W[2] + W[3]
    mu, var = z.mean(-1, keepdim=True), z.var(-1, keepdim=True, unbiased=False)
    y = m.ttt_norm_weight[None, :, None] * (z - mu) / torch.sqrt(var + 1e-8) + m.ttt_norm_bias[None, :, None]
    (0.5 * (y - tgt).pow(2).sum() / C).backward()
    gn = torch.sqrt(sum(p.grad.pow(2).sum() for p in W))
    torch.testing.assert_close(sig[0, 0], gn, rtol=1e-4, atol=0)


def test_reset_restores_the_checkpoint_weights():
    m = make_block(3)
    m.reset_stream()
    x = torch.randn(1, 1, D)
    with torch.no_grad():
        first = m(x)
        m(torch.randn(1, 1, D))
        m.reset_stream()
        again = m(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
