"""Our Moshi-TTT layer, frame by frame as Moshi streams it, against an independent reference of what their
layer computes (public repo AlufRon/claude-web, ``moshi_ttt_try/moshi-finetune/moshi_ttt/``):

- ``hybrid_layer.py:331-346``: each call right-padded with zero rows to the mini-batch;
- ``models/ssm/ttt_layer.py:318-375`` (``process_input``, ``get_eta``, ``ln_reconstruction_target``): Q/K
  L2-normalised, audio RoPE at positions ``arange(L) % C``, target ``LN(XV - XK)`` with the unbiased std and
  ``/(std + 1e-5)``, step ``base_lr * sigmoid(.) / hd / C``;
- ``ttt_layer.py:80-117``: the branch is the merged heads of ``XQ + LN(f(XQ; W'))``: no post_norm, no wo;
- the 2-layer class never hands its update on (``ttt_layer.py:642-694``); the N-layer class writes ``W - dW``
  back in eval (``:592-594``) and its output sees ``W - 2 dW`` (``ops/ttt_mlp.py:470-494``).
"""

import pytest
import torch
from test_moshi_ttt_math import primal_reference, ref_ln, ref_mlp

from ttt_tui.backends.moshi_ttt.layer import MoshiTTT

D, H, C = 32, 4, 8


def make_block(mlp_layers=2, persist=None, use_rope=False, seed=0):
    torch.manual_seed(seed)
    hd = D // H
    dims = [hd] + [4 * hd] * (mlp_layers - 1) + [hd]
    m = MoshiTTT(D, H, dims, base_lr=3.0, mini_batch_size=C, use_rope=use_rope, write_back=persist)
    inner = {id(p) for p in sum(m.checkpoint_weights(), [])}
    with torch.no_grad():
        for p in m.parameters():  # the inner MLP at their init scale (std 0.02): f's outputs are then small
            p.copy_(torch.randn_like(p) * (0.02 if id(p) in inner else 0.3 if p.dim() > 1 else 0.1))
        m.ttt_norm_weight.add_(1.0)  # enough that the inner layer norm's epsilon (1e-8 vs 1e-6) shows
    return m


def reference_inputs(m, x):
    """Written apart from the layer: the padded call's XQ, XK, target and step sizes, per their TTTBase."""
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
    """One call of their layer on the real rows ``x`` [1, T<=C, D] from inner weights (weights, biases):
    returns (the TTT branch [1, T, D], W - dW, b - db, losses [T, 3] of the real rows)."""
    T = x.shape[1]
    XQ, XK, tgt, eta = reference_inputs(m, x)
    gamma, beta = m.ttt_norm_weight[None, :, None], m.ttt_norm_bias[None, :, None]
    out, nw, nb, _ = primal_reference(weights, biases, gamma, beta, XQ, XK, tgt, eta, m.multi_layer)

    def mse(w, b):
        return (ref_ln(ref_mlp(w, b, XK[:, :, :T]), gamma, beta) - tgt[:, :, :T]).pow(2).mean(-1).mean(1)[0]

    losses = torch.stack([mse(*W0), mse(weights, biases), mse(nw, nb)], -1)
    return out[:, :, :T].transpose(1, 2).reshape(1, T, -1), nw, nb, losses


@pytest.mark.parametrize("mlp_layers", [2, 3])
@pytest.mark.parametrize("persist", [None, True, False])
def test_streamed_frames_equal_the_reference(mlp_layers, persist):
    m = make_block(mlp_layers, persist, use_rope=(mlp_layers == 3))
    assert m.write_back == (mlp_layers > 2 if persist is None else persist)
    assert not hasattr(m, "post_norm") and not hasattr(m, "wo")  # their branch never applies them
    m.reset_stream()
    w0, b0 = m.checkpoint_weights()
    W0 = ([t.detach()[None] for t in w0], [t.detach()[None] for t in b0])
    w, b = W0
    torch.manual_seed(1)
    frames = [torch.randn(1, 1, D) for _ in range(5)]
    want = []
    with torch.no_grad():
        for x in frames:
            y = m(x)
            out, nw, nb, losses = reference_call(m, x, w, b, W0)
            if m.write_back:
                w, b = nw, nb
            torch.testing.assert_close(y, out, rtol=1e-4, atol=1e-5)
            want.append(losses)
        got, signals = m.take()
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-4, atol=1e-7)
    assert signals.shape == (5, 3) and torch.isfinite(signals).all()
    if not m.write_back:  # every call restarts from the checkpoint weights: lprev == l0 exactly
        assert torch.equal(got[:, 0], got[:, 1])
    else:  # the weights move: after the first frame l0 differs from lprev
        assert torch.equal(got[0, 0], got[0, 1]) and not torch.allclose(got[1:, 0], got[1:, 1])
        assert (signals[1:, 1] > signals[0, 1]).all()  # ||W_t - W0|| / ||W0|| grows


def test_a_call_longer_than_the_mini_batch_carries_the_weights_within_it():
    """Their scan carries the weights from one mini-batch to the next within a call, also in the 2-layer class."""
    m = make_block(2)
    m.reset_stream()
    x = torch.randn(1, C + 3, D)
    with torch.no_grad():
        y = m(x)
        losses, _ = m.take()
        w0, b0 = m.checkpoint_weights()
        W0 = ([t.detach()[None] for t in w0], [t.detach()[None] for t in b0])
        out1, nw, nb, l1 = reference_call(m, x[:, :C], *W0, W0)
        out2, _, _, l2 = reference_call(m, x[:, C:], nw, nb, W0)
    torch.testing.assert_close(y, torch.cat([out1, out2], 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses, torch.cat([l1, l2]), rtol=1e-4, atol=1e-7)


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
