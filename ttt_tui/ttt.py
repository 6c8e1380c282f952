"""The TTT inner loop and the three Figure-5 losses (l0, lprev, lafter).

Definitions: ``docs/losses.md``. One implementation serves inference, streaming and
training (it is plain differentiable torch code): the dual form of ttt-lm-pytorch, generalised so that the
causal form (``Wbar_i = W - 1/(i+1) sum_{j<=i} lr_j g_j``) and the non-causal form of ttt-video-dit /
Moshi-TTT (``Wbar_i = W - sum_{j<b} lr_j g_j``) differ only in the step matrix ``eta[i, j]``.

Losses cost little: ``lprev`` is the residual that the layer-norm backward needs anyway, ``lafter`` reuses
the dual form with ``XK`` as extra queries, ``l0`` is one forward with the stream-start weights. They stay
on the device; nothing here synchronises with the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .recording import StepRecorder

LN_EPS = 1e-6
_GELU_K = math.sqrt(2.0 / math.pi)


@dataclass
class InnerLoopResult:
    out: torch.Tensor  # [B, H, T, d]
    params: dict  # weights after the last complete mini-batch
    losses: torch.Tensor | None  # [B, T, 3]: (l0, lprev, lafter), or None when not asked for


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x, approximate="tanh")


def gelu_tanh_grad(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(_GELU_K * (x + 0.044715 * x.pow(3)))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_K * (1.0 + 3 * 0.044715 * x * x)


def _head_ln(ln_weight: torch.Tensor, ln_bias: torch.Tensor):
    """[H, d] -> broadcastable against [B, H, n, d]."""
    return ln_weight[None, :, None, :], ln_bias[None, :, None, :]


def _ln_fwd(z, gamma, beta, eps=LN_EPS):
    """Per-head layer norm. Returns (LN(z), xhat, 1/std); one fused op for the statistics (``z.var`` costs
    several times more on the small tensors of a streaming step)."""
    xhat, _, rstd = torch.native_layer_norm(z, (z.shape[-1],), None, None, eps)
    return gamma * xhat + beta, xhat, rstd


def _ln_residual_and_grad(z, target, gamma, beta, eps=LN_EPS):
    """Residual ``LN(z) - target`` and the gradient of ``1/2 ||residual||^2`` w.r.t. ``z``.

    The residual is what the layer-norm backward needs anyway: ``lprev`` comes from it for free
    (reference, "Cheap to compute").
    """
    y, xhat, rstd = _ln_fwd(z, gamma, beta, eps)
    resid = y - target
    g_xhat = resid * gamma
    d = z.shape[-1]
    grad_z = (d * g_xhat - g_xhat.sum(-1, keepdim=True) - xhat * (g_xhat * xhat).sum(-1, keepdim=True)) * (rstd / d)
    return resid, grad_z


def _forward(kind, p, x):
    """f(x; W) for one mini-batch; returns (pre-LN output, hidden pre-activation, hidden activation)."""
    z1 = x @ p["W1"] + p["b1"]
    if kind == "linear":
        return z1, None, None
    x2 = gelu_tanh(z1)
    return x2 @ p["W2"] + p["b2"], z1, x2


def _step_matrices(lr: torch.Tensor, b: int, causal: bool) -> torch.Tensor:
    """eta[..., k, i, j] for every complete mini-batch k at once: the weight of token j's gradient in the
    weights token i uses. causal (ttt-lm-pytorch): lr_j / (i+1) for j <= i; non-causal (video-dit): lr_j."""
    B, H, T = lr.shape
    eta = lr.reshape(B, H, T // b, 1, b).expand(B, H, T // b, b, b)
    if causal:
        idx = torch.arange(1, b + 1, device=lr.device, dtype=lr.dtype)
        eta = torch.tril(eta / idx[:, None])
    return eta


def _mini_batch(kind, W, xqs, xk, tgt, etas, gamma, beta, n_q, eps=LN_EPS):
    """One mini-batch from weights W. ``xqs`` are the query rows: the n_q tokens' XQ, followed (when lafter is
    wanted) by their XK; ``etas`` the matching rows of the step matrix.

    Returns (out [.., n_q, d], lprev residual, LN(f(XK; Wbar)) rows or None, grads)."""
    zk, z1k, x2k = _forward(kind, W, xk)
    resid, grad_z = _ln_residual_and_grad(zk, tgt, gamma, beta, eps)
    # Dual form: f(x; Wbar_i) without materialising Wbar_i; the "+ 1" carries the bias updates. XK rides
    # along as extra query rows for lafter (reference, "Cheap to compute": a few more rows, no more ops).
    kT = xk.transpose(-1, -2)
    if kind == "linear":
        grads = (grad_z,)
        zq = xqs @ W["W1"] + W["b1"] - (etas * (xqs @ kT + 1.0)) @ grad_z
    else:
        grad_z1 = (grad_z @ W["W2"].transpose(-1, -2)) * gelu_tanh_grad(z1k)
        grads = (grad_z1, x2k, grad_z)
        x2q = gelu_tanh(xqs @ W["W1"] + W["b1"] - (etas * (xqs @ kT + 1.0)) @ grad_z1)
        zq = x2q @ W["W2"] + W["b2"] - (etas * (x2q @ x2k.transpose(-1, -2) + 1.0)) @ grad_z
    yq, _, _ = _ln_fwd(zq, gamma, beta, eps)
    out = xqs[:, :, :n_q] + yq[:, :, :n_q]
    return out, resid, (yq[:, :, n_q:] if yq.shape[2] > n_q else None), grads


def _commit(kind, W, xk, eta_last, grads):
    """Weights for the next mini-batch: W - sum_j eta[last, j] g_j."""
    e = eta_last[..., None]  # [B, H, n, 1]
    if kind == "linear":
        (grad_z,) = grads
        return {
            "W1": W["W1"] - xk.transpose(-1, -2) @ (e * grad_z),
            "b1": W["b1"] - (e * grad_z).sum(2, keepdim=True),
        }
    grad_z1, x2k, grad_z = grads
    return {
        "W1": W["W1"] - xk.transpose(-1, -2) @ (e * grad_z1),
        "b1": W["b1"] - (e * grad_z1).sum(2, keepdim=True),
        "W2": W["W2"] - x2k.transpose(-1, -2) @ (e * grad_z),
        "b2": W["b2"] - (e * grad_z).sum(2, keepdim=True),
    }


def run_inner_loop(
    kind,
    params,
    ln_weight,
    ln_bias,
    XQ,
    XK,
    target,
    lr,
    mini_batch_size,
    causal=True,
    W0=None,
    with_losses=True,
    w_is_w0=None,
    ln_eps=LN_EPS,
):
    """``inner_loop`` with the switches the layer needs: ``with_losses=False`` is the uninstrumented path,
    ``w_is_w0`` says whether ``params`` are still the stream-start weights (default: ``W0 is None``),
    ``ln_eps`` the inner layer norm's epsilon (Moshi-TTT's ops use 1e-8).

    Only what depends on the sequential weights runs per mini-batch; the loss reductions and ``l0`` (which
    needs only W0) run once over the whole call, so instrumentation adds few operations per mini-batch.
    """
    if kind not in ("linear", "mlp"):
        raise ValueError(f"kind must be 'linear' or 'mlp', not {kind!r}")
    b = int(mini_batch_size)
    if b < 1:
        raise ValueError("mini_batch_size must be >= 1")
    if w_is_w0 is None:
        w_is_w0 = W0 is None
    if W0 is None:
        W0 = params
    gamma, beta = _head_ln(ln_weight, ln_bias)
    B, H, T, d = XQ.shape
    nb = T // b
    n_full = nb * b
    if nb:
        # Per call, not per mini-batch: the step matrices, and the [XQ; XK] query rows of every mini-batch.
        etas = _step_matrices(lr[:, :, :n_full], b, causal)  # [B, H, nb, b, b]
        if with_losses:
            queries = torch.cat(
                [XQ[:, :, :n_full].reshape(B, H, nb, b, d), XK[:, :, :n_full].reshape(B, H, nb, b, d)], 3
            )  # [B, H, nb, 2b, d]
            query_etas = torch.cat([etas, etas], 3)
        else:
            queries, query_etas = XQ[:, :, :n_full].reshape(B, H, nb, b, d), etas
    W = dict(params)
    outs, resids, yafter = [], [], []
    n_at_w0 = 0  # tokens processed at the stream-start weights (before the first commit)
    for s in range(0, T, b):
        e = min(s + b, T)
        xk = XK[:, :, s:e]
        if e - s == b:
            k = s // b
            xqs, qeta, eta_last = queries[:, :, k], query_etas[:, :, k], etas[:, :, k, -1]
        else:  # trailing tokens of an incomplete mini-batch
            eta = _step_matrices(lr[:, :, s:e], e - s, causal)[:, :, 0]
            xqs = torch.cat([XQ[:, :, s:e], xk], 2) if with_losses else XQ[:, :, s:e]
            qeta = torch.cat([eta, eta], 2) if with_losses else eta
            eta_last = eta[:, :, -1]
        out, resid, ya, grads = _mini_batch(kind, W, xqs, xk, target[:, :, s:e], qeta, gamma, beta, e - s, ln_eps)
        outs.append(out)
        if with_losses:
            resids.append(resid)
            yafter.append(ya)
        if w_is_w0:
            n_at_w0 = e
        if e - s == b:  # only a complete mini-batch commits
            W = _commit(kind, W, xk, eta_last, grads)
            w_is_w0 = False
    out = torch.cat(outs, 2) if outs else XQ.new_zeros(XQ.shape)
    if not with_losses:
        return InnerLoopResult(out, W, None)
    if not T:
        return InnerLoopResult(out, W, XQ.new_zeros(XQ.shape[0], 0, 3))
    after = torch.cat(yafter, 2) - target
    before = torch.cat(resids, 2)
    if n_at_w0 == T:  # same weights: l0 is exactly lprev in a stream's first mini-batch
        res = torch.stack([before, before, after], -1)
    else:  # one forward with W0 for every token not in the first mini-batch
        z0, _, _ = _forward(kind, W0, XK[:, :, n_at_w0:])
        y0, _, _ = _ln_fwd(z0, gamma, beta, ln_eps)
        initial = torch.cat([before[:, :, :n_at_w0], y0 - target[:, :, n_at_w0:]], 2) if n_at_w0 else y0 - target
        res = torch.stack([initial, before, after], -1)
    losses = res.pow(2).mean(3).mean(1)  # [B, H, T, d, 3] -> MSE per element, mean over heads: [B, T, 3]
    return InnerLoopResult(out, W, losses)


def inner_loop(
    kind, params, ln_weight, ln_bias, XQ, XK, target, lr, mini_batch_size, causal=True, W0=None, ln_eps=LN_EPS
):
    """Run the TTT inner loop over ``T`` tokens and report the three Figure-5 losses per token.

    kind: "linear" | "mlp"; params: W1 [B,H,d,h], b1 [B,H,1,h] (+ W2 [B,H,h,d], b2 [B,H,1,d]);
    ln_weight, ln_bias: [H, d]; XQ, XK, target: [B, H, T, d]; lr: [B, H, T] per-token step size;
    W0: the stream-start weights (None: params); ln_eps: the inner layer norm's epsilon.
    Returns ``InnerLoopResult(out, params, losses)`` with
    losses [B, T, 3] = (l0, lprev, lafter). The stream is taken to start at a mini-batch boundary; trailing
    tokens of an incomplete mini-batch get outputs and losses and commit nothing.
    """
    return run_inner_loop(
        kind, params, ln_weight, ln_bias, XQ, XK, target, lr, mini_batch_size, causal, W0, ln_eps=ln_eps
    )


# --------------------------------------------------------------------------------------------------------
# The stateful layer


@dataclass
class StreamState:
    """What one stream carries between calls: committed weights and the open mini-batch's inputs."""

    W: dict
    position: int = 0
    at_start_weights: bool = True
    pending: tuple | None = None  # (XQ, XK, target, lr) of the incomplete mini-batch


class TTTLayer(nn.Module):
    """A TTT sequence-modelling layer (ttt-lm-pytorch layout) that streams and records its losses.

    Projections Q/K/V, step-size gate ``base_lr * sigmoid(x . theta_h + c_h) / d`` per head and token,
    per-head layer norm inside the inner model, post-norm, output projection. ``forward`` processes a whole
    sequence from the stream-start weights (training); ``stream_step`` continues the current stream.
    """

    def __init__(
        self, dim, num_heads, kind="mlp", mini_batch_size=16, base_lr=1.0, expansion=4, causal=True, qk_l2norm=False
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim must be a multiple of num_heads")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.kind, self.mini_batch_size, self.base_lr, self.causal = kind, mini_batch_size, base_lr, causal
        self.qk_l2norm = qk_l2norm  # video-dit / Moshi-TTT: XQ, XK L2-normalised per head
        H, d = num_heads, self.head_dim
        h = d * expansion if kind == "mlp" else d
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim) for _ in range(4))
        self.lr_gate_weight = nn.Parameter(torch.randn(H, dim) * 0.02)
        self.lr_gate_bias = nn.Parameter(torch.zeros(H))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, d))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, d))
        self.post_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.W1 = nn.Parameter(torch.randn(H, d, h) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(H, 1, h))
        if kind == "mlp":
            self.W2 = nn.Parameter(torch.randn(H, h, d) * 0.02)
            self.b2 = nn.Parameter(torch.zeros(H, 1, d))
        self.lr_scale = 1.0  # inner step-size scale (0: no learning; large: degenerative/exploding)
        self.record_losses = True
        self._state: StreamState | None = None
        self._recorded = StepRecorder(dim=1)  # [B, n, 3] per step, joined along positions

    # -- pieces -------------------------------------------------------------------------------------------
    def start_weights(self) -> dict:
        names = ("W1", "b1", "W2", "b2") if self.kind == "mlp" else ("W1", "b1")
        return {k: getattr(self, k) for k in names}

    def _heads(self, t):  # [B, T, dim] -> [B, H, T, d]
        B, T, _ = t.shape
        return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

    def _inputs(self, x):
        XQ, XK, XV = self._heads(self.wq(x)), self._heads(self.wk(x)), self._heads(self.wv(x))
        if self.qk_l2norm:
            XQ, XK = torch.nn.functional.normalize(XQ, dim=-1), torch.nn.functional.normalize(XK, dim=-1)
        target = XV - XK  # ttt-lm-pytorch's self-supervised target
        gate = torch.sigmoid(torch.einsum("btc,hc->bht", x, self.lr_gate_weight) + self.lr_gate_bias[:, None])
        lr = (self.base_lr * self.lr_scale / self.head_dim) * gate
        return XQ, XK, target, lr

    def _finish(self, z):  # [B, H, T, d] -> [B, T, dim]
        B, _, T, _ = z.shape
        return self.wo(self.post_norm(z.transpose(1, 2).reshape(B, T, self.dim)))

    def _inner_loop(self, W, inputs, **kw):
        XQ, XK, target, lr = inputs
        return run_inner_loop(
            self.kind,
            W,
            self.ttt_norm_weight,
            self.ttt_norm_bias,
            XQ,
            XK,
            target,
            lr,
            self.mini_batch_size,
            self.causal,
            **kw,
        )

    # -- whole sequence (training) -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self._inner_loop(self.start_weights(), self._inputs(x), with_losses=False)
        return self._finish(res.out)

    # -- streaming ---------------------------------------------------------------------------------------
    def reset_stream(self) -> None:
        """Back to the stream-start weights and position 0."""
        self._state = StreamState(W=self.start_weights())
        self._recorded.clear()

    @property
    def position(self) -> int:
        return 0 if self._state is None else self._state.position

    @property
    def state(self) -> StreamState | None:
        return self._state

    def stream_step(self, x: torch.Tensor) -> torch.Tensor:
        """Continue the stream with ``x`` [B, n, dim]; returns the outputs of these n tokens.

        The open mini-batch is recomputed from its committed start weights each call: the causal form makes
        each token depend only on earlier tokens, so any chunking gives the same numbers.
        """
        if self._state is None:
            self.reset_stream()
        st = self._state
        n_new = x.shape[1]
        if n_new == 0:
            return x
        cur = self._inputs(x)
        n_old = 0
        if st.pending is not None:
            n_old = st.pending[0].shape[2]
            cur = tuple(torch.cat([p, c], 2) for p, c in zip(st.pending, cur, strict=True))
        res = self._inner_loop(
            st.W, cur, W0=self.start_weights(), with_losses=self.record_losses, w_is_w0=st.at_start_weights
        )
        T = cur[0].shape[2]
        n_done = (T // self.mini_batch_size) * self.mini_batch_size
        if n_done:
            st.W = {k: v.detach() for k, v in res.params.items()}
            st.at_start_weights = False
        st.pending = tuple(t[:, :, n_done:] for t in cur) if n_done < T else None
        st.position += n_new
        if res.losses is not None:
            self._recorded.add(losses=res.losses[:, n_old:])
        return self._finish(res.out[:, :, n_old:])

    def take_losses(self) -> torch.Tensor | None:
        """The losses recorded since the last call, [B, n, 3] on the layer's device (no host sync here)."""
        (losses,) = self._recorded.take("losses")
        return losses
