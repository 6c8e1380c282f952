"""The three losses against a slow, independent reference: primal form, token by token, float64, autograd."""

import math

import pytest
import torch

from ttt_tui.ttt import TTTLayer, inner_loop


def ref_f(kind, W, x):
    z = x @ W["W1"] + W["b1"][0]
    if kind == "mlp":
        z = torch.nn.functional.gelu(z, approximate="tanh") @ W["W2"] + W["b2"][0]
    return z


def ref_ln(z, w, b):
    mu = z.mean()
    var = ((z - mu) ** 2).mean()
    return w * (z - mu) / torch.sqrt(var + 1e-6) + b


def ref_r(kind, W, x, tgt, w, b):
    """Per-token squared residual r(W) = ||LN(f(x; W)) - target||^2."""
    return ((ref_ln(ref_f(kind, W, x), w, b) - tgt) ** 2).sum()


def reference(kind, params, lnw, lnb, XQ, XK, tgt, lr, bsz, causal, W0):
    """Literal reading of ttt-inner-loop.md, one head and one token at a time."""
    B, H, T, d = XQ.shape
    out = torch.zeros(B, H, T, d, dtype=torch.float64)
    losses = torch.zeros(B, H, T, 3, dtype=torch.float64)
    for bb in range(B):
        for hh in range(H):
            W = {k: v[bb, hh].double().clone() for k, v in params.items()}
            Wz = {k: v[bb, hh].double() for k, v in W0.items()}
            w, b = lnw[hh].double(), lnb[hh].double()
            for s in range(0, T, bsz):
                e = min(s + bsz, T)
                grads = []
                for j in range(s, e):
                    Wg = {k: v.clone().requires_grad_(True) for k, v in W.items()}
                    r = 0.5 * ref_r(kind, Wg, XK[bb, hh, j].double(), tgt[bb, hh, j].double(), w, b)
                    g = torch.autograd.grad(r, list(Wg.values()))
                    grads.append(dict(zip(Wg.keys(), g, strict=True)))
                Wbars = []
                for i in range(s, e):
                    if causal:
                        js, scale = range(s, i + 1), 1.0 / (i - s + 1)
                    else:
                        js, scale = range(s, e), 1.0
                    Wbar = {k: W[k] - scale * sum(lr[bb, hh, j].double() * grads[j - s][k] for j in js) for k in W}
                    Wbars.append(Wbar)
                    xq, xk, t = XQ[bb, hh, i].double(), XK[bb, hh, i].double(), tgt[bb, hh, i].double()
                    out[bb, hh, i] = xq + ref_ln(ref_f(kind, Wbar, xq), w, b)
                    losses[bb, hh, i, 0] = ref_r(kind, Wz, xk, t, w, b) / d
                    losses[bb, hh, i, 1] = ref_r(kind, W, xk, t, w, b) / d
                    losses[bb, hh, i, 2] = ref_r(kind, Wbar, xk, t, w, b) / d
                if e - s == bsz:
                    W = Wbars[-1]
    return out, losses.mean(1)


def make_inputs(kind, B=2, H=2, T=37, d=8, seed=0, lr_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    h = 4 * d if kind == "mlp" else d
    params = {
        "W1": torch.randn(B, H, d, h, generator=g) / math.sqrt(d),
        "b1": torch.randn(B, H, 1, h, generator=g) * 0.1,
    }
    if kind == "mlp":
        params["W2"] = torch.randn(B, H, h, d, generator=g) / math.sqrt(h)
        params["b2"] = torch.randn(B, H, 1, d, generator=g) * 0.1
    lnw = 1.0 + 0.1 * torch.randn(H, d, generator=g)
    lnb = 0.1 * torch.randn(H, d, generator=g)
    XQ, XK, tgt = (torch.randn(B, H, T, d, generator=g) for _ in range(3))
    lr = lr_scale * torch.rand(B, H, T, generator=g) * 0.5
    return params, lnw, lnb, XQ, XK, tgt, lr


def assert_close(a, b, rtol=1e-4, elementwise=False):
    """Relative error: per element for positive losses, against the tensor's scale for signed outputs."""
    a, b = a.double(), b.double()
    scale = b.abs() if elementwise else b.abs().max()
    err = ((a - b).abs() / scale).max().item()
    assert err < rtol, f"max relative error {err:.2e}"


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bsz", [1, 4, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(kind, causal, bsz, dtype):
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs(kind, T=37, seed=bsz)  # 37: not a multiple of b
    if not causal:
        lr = lr / bsz  # video-dit's lr already carries 1/b
    # A stream that is already under way: W0 differs from the current weights.
    W0 = {k: v + 0.05 * torch.randn_like(v) for k, v in params.items()}
    ref_out, ref_losses = reference(kind, params, lnw, lnb, XQ, XK, tgt, lr, bsz, causal, W0)
    # the three losses really differ here, so a mix-up between them cannot pass
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert (ref_losses[..., a] - ref_losses[..., b]).abs().max() > 1e-2
    cast = lambda d: {k: v.to(dtype) for k, v in d.items()}  # noqa: E731
    args = [t.to(dtype) for t in (lnw, lnb, XQ, XK, tgt, lr)]
    res = inner_loop(kind, cast(params), *args, bsz, causal=causal, W0=cast(W0))
    assert res.out.shape == XQ.shape and res.losses.shape == (2, 37, 3)
    assert res.out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert_close(res.out, ref_out, tol)
    assert_close(res.losses, ref_losses, tol, elementwise=True)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_final_params_commit_complete_mini_batches_only(kind):
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs(kind, T=37)
    full = inner_loop(kind, params, lnw, lnb, XQ, XK, tgt, lr, 16)
    head = inner_loop(kind, params, lnw, lnb, XQ[:, :, :32], XK[:, :, :32], tgt[:, :, :32], lr[:, :, :32], 16)
    for k in params:
        torch.testing.assert_close(full.params[k], head.params[k])
        assert not torch.equal(full.params[k], params[k])


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_loss_facts(kind):
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs(kind, T=48, lr_scale=0.05)
    res = inner_loop(kind, params, lnw, lnb, XQ, XK, tgt, lr, 16)
    l0, lprev, lafter = res.losses.unbind(-1)
    # first mini-batch: l0 is lprev exactly (same weights)
    assert torch.equal(l0[:, :16], lprev[:, :16])
    assert not torch.allclose(l0[:, 16:], lprev[:, 16:])
    # a small step lowers the loss of the token it includes
    assert (lafter <= lprev).float().mean() > 0.9
    # no step: all three equal
    res0 = inner_loop(kind, params, lnw, lnb, XQ, XK, tgt, torch.zeros_like(lr), 16)
    torch.testing.assert_close(res0.losses[..., 0], res0.losses[..., 2])
    torch.testing.assert_close(res0.losses[..., 1], res0.losses[..., 2])


def test_rejects_unknown_kind():
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs("linear", T=4)
    with pytest.raises(ValueError, match="kind"):
        inner_loop("rnn", params, lnw, lnb, XQ, XK, tgt, lr, 4)


def test_gradient_flows_through_inner_loop():
    """The outer loss differentiates through the inner loop (how the default model is trained)."""
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs("mlp", T=32)
    W1 = params["W1"].clone().requires_grad_(True)
    res = inner_loop("mlp", {**params, "W1": W1}, lnw, lnb, XQ, XK, tgt, lr, 16)
    res.out.pow(2).mean().backward()
    assert W1.grad is not None and W1.grad.abs().sum() > 0


# ---- streaming invariance of the stateful layer ------------------------------------------------------------


def _layer(kind, seed=0):
    torch.manual_seed(seed)
    layer = TTTLayer(dim=32, num_heads=4, kind=kind, mini_batch_size=8, base_lr=1.0)
    with torch.no_grad():
        layer.W1.mul_(20)  # make the inner model non-trivial so that the losses move
    return layer.eval()


def _stream(layer, x, sizes):
    layer.reset_stream()
    outs, s = [], 0
    for n in sizes:
        outs.append(layer.stream_step(x[:, s : s + n]))
        s += n
    assert s == x.shape[1]
    return torch.cat(outs, 1), layer.take_losses()


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_streaming_invariance(kind):
    layer = _layer(kind)
    x = torch.randn(2, 45, 32)
    g = torch.Generator().manual_seed(3)
    random_sizes, left = [], 45
    while left:
        n = min(left, int(torch.randint(1, 12, (1,), generator=g)))
        random_sizes.append(n)
        left -= n
    with torch.no_grad():
        whole_out, whole_loss = _stream(layer, x, [45])
        for sizes in ([1] * 45, random_sizes):
            out, loss = _stream(layer, x, sizes)
            torch.testing.assert_close(out, whole_out, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(loss, whole_loss, rtol=1e-4, atol=1e-6)
        # the whole-sequence training path agrees with the stream
        torch.testing.assert_close(layer(x), whole_out, rtol=1e-4, atol=1e-5)
    assert whole_loss.shape == (2, 45, 3)
    assert layer.position == 45


def test_reset_restores_start_weights_and_position():
    layer = _layer("mlp")
    x = torch.randn(1, 40, 32)
    with torch.no_grad():
        out1, loss1 = _stream(layer, x, [40])
        assert not torch.equal(layer.state.W["W1"], layer.W1.expand_as(layer.state.W["W1"]))
        layer.stream_step(torch.randn(1, 17, 32))
        layer.reset_stream()
        assert layer.position == 0 and layer.state.pending is None
        assert layer.state.W["W1"] is layer.W1
        out2, loss2 = _stream(layer, x, [40])
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(loss1, loss2)


def test_lr_scale_zero_gives_equal_losses():
    layer = _layer("mlp")
    layer.lr_scale = 0.0
    with torch.no_grad():
        _, loss = _stream(layer, torch.randn(1, 40, 32), [40])
    torch.testing.assert_close(loss[..., 0], loss[..., 2])
    torch.testing.assert_close(loss[..., 1], loss[..., 2])


def test_uninstrumented_stream_gives_same_outputs_and_no_losses():
    layer = _layer("mlp")
    x = torch.randn(1, 40, 32)
    with torch.no_grad():
        out, _ = _stream(layer, x, [13, 27])
        layer.record_losses = False
        layer.reset_stream()
        out2 = torch.cat([layer.stream_step(x[:, :13]), layer.stream_step(x[:, 13:])], 1)
    assert layer.take_losses() is None
    torch.testing.assert_close(out, out2)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False])
def test_contract_chunked_at_mini_batch_boundaries_equals_whole(kind, causal):
    """Callers of the public function can stream it: carry res.params, keep W0, cut at multiples of b."""
    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs(kind, T=53)
    whole = inner_loop(kind, params, lnw, lnb, XQ, XK, tgt, lr, 4, causal=causal)
    outs, losses, p = [], [], params
    for s, e in ((0, 8), (8, 12), (12, 40), (40, 53)):
        sl = slice(s, e)
        r = inner_loop(
            kind, p, lnw, lnb, XQ[:, :, sl], XK[:, :, sl], tgt[:, :, sl], lr[:, :, sl], 4, causal=causal, W0=params
        )
        outs.append(r.out)
        losses.append(r.losses)
        p = r.params
    torch.testing.assert_close(torch.cat(outs, 2), whole.out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat(losses, 1), whole.losses, rtol=1e-4, atol=1e-6)
    for k in params:
        torch.testing.assert_close(p[k], whole.params[k], rtol=1e-4, atol=1e-6)
