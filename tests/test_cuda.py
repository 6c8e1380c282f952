"""The CUDA path (skipped without a GPU): same numbers as the CPU, and no host synchronisation while streaming."""

import pytest
import torch

from ttt_tui.ttt import TTTLayer, inner_loop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_inner_loop_on_cuda_matches_cpu():
    from test_inner_loop import make_inputs

    params, lnw, lnb, XQ, XK, tgt, lr = make_inputs("mlp", T=45)
    cpu = inner_loop("mlp", params, lnw, lnb, XQ, XK, tgt, lr, 16)
    to = lambda t: t.cuda()  # noqa: E731
    gpu = inner_loop("mlp", {k: to(v) for k, v in params.items()}, *map(to, (lnw, lnb, XQ, XK, tgt, lr)), 16)
    torch.testing.assert_close(gpu.losses.cpu(), cpu.losses, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(gpu.out.cpu(), cpu.out, rtol=1e-3, atol=1e-4)


def test_streaming_does_not_synchronise_with_the_host():
    torch.manual_seed(0)
    layer = TTTLayer(64, 4, "mlp", mini_batch_size=16).cuda().eval()
    x = torch.randn(1, 200, 64, device="cuda")
    with torch.no_grad():
        layer.reset_stream()
        layer.stream_step(x[:, :7])  # warm-up (lazy CUDA init may synchronise)
        layer.reset_stream()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for s in range(0, 200, 50):
                layer.stream_step(x[:, s : s + 50])
            losses = layer.take_losses()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert losses.is_cuda and losses.shape == (1, 200, 3)


def test_embedded_backend_on_cuda_matches_cpu():
    import numpy as np

    from ttt_tui.backends import EmbeddedBackend

    audio = np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32)
    res = {}
    for dev in ("cpu", "cuda"):
        be = EmbeddedBackend(device=dev)
        be.process(audio)
        res[dev] = be.take_losses()
    for layer in res["cpu"]:
        np.testing.assert_allclose(res["cuda"][layer], res["cpu"][layer], rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("mlp_layers", [2, 3])
def test_moshi_ttt_block_on_cuda_without_host_sync(mlp_layers):
    """Their block frame by frame in bfloat16 (as on a GPU node): no host synchronisation per frame, and the
    same losses as float32 on the CPU within bfloat16's precision."""
    from test_moshi_ttt_block import make_block

    cpu = make_block(mlp_layers, persist=True, use_rope=True).to(torch.bfloat16).float()  # same rounded weights
    gpu = make_block(mlp_layers, persist=True, use_rope=True).to("cuda", torch.bfloat16)
    frames = [torch.randn(1, 1, cpu.dim) for _ in range(6)]
    gpu_frames = [x.to("cuda", torch.bfloat16) for x in frames]  # before: a copy from the host synchronises
    with torch.no_grad():
        for m, dev, dt in ((cpu, "cpu", torch.float32), (gpu, "cuda", torch.bfloat16)):
            m.reset_stream()
            m(frames[0].to(dev, dt))  # warm-up (lazy CUDA init, the RoPE table)
            m.reset_stream()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for x in gpu_frames:
                y = gpu(x)
            gpu_losses, gpu_signals = gpu.take()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        for x in frames:
            cpu(x)
        cpu_losses, _ = cpu.take()
    assert y.dtype == torch.bfloat16 and gpu_losses.is_cuda and gpu_signals.shape == (6, 3)
    torch.testing.assert_close(gpu_losses.float().cpu(), cpu_losses, rtol=0.1, atol=1e-3)
