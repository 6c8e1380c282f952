"""A tiny random Moshi + Mimi and a Moshi-TTT checkpoint folder in the exact layout of the reference
(docs/moshi-ttt.md), built at test time: no download. Also used by bench/bench_moshi.py.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def tiny_configs(dim=64, num_heads=4, num_layers=4):
    from moshi.models import loaders

    mimi = copy.deepcopy(loaders._mimi_config)
    mimi["seanet"].update(n_filters=4, dimension=32)
    mimi["quantizer"].update(dimension=16, n_q=8, bins=64, input_dimension=32, output_dimension=32)
    mimi["transformer"].update(
        d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, input_dimension=32, output_dimensions=[32]
    )
    lm = dict(loaders._lm_kwargs)
    lm.update(
        dim=dim,
        text_card=100,
        n_q=16,
        dep_q=8,
        card=64,
        num_heads=num_heads,
        num_layers=num_layers,
        hidden_scale=2,
        context=100,
        depformer_dim=32,
        depformer_dim_feedforward=64,
        depformer_num_heads=2,
        depformer_num_layers=1,
    )
    return mimi, lm


def _save(state: dict, path: Path) -> None:
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))


def ttt_tensors(L, dim, heads, mlp_dims, gen, alpha=0.1, unused=True):
    """One TTT layer's tensors, at the scale of their init (std 0.02), with keys as in their checkpoints;
    ``unused``: with post_norm and wo (their files carry them; their layer never applies them)."""
    p = f"transformer.layers.{L}.seq_modeling_block."
    t = p + "ttt_layer.ttt."
    hd = dim // heads

    def n(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    out = {}
    for m in ("wq", "wk", "wv", "wo") if unused else ("wq", "wk", "wv"):
        out[f"{t}{m}.weight"] = n(dim, dim, std=0.1)
        out[f"{t}{m}.bias"] = n(dim, std=0.05)
    out[t + "learnable_ttt_lr_weight"] = n(heads, 1, dim)
    out[t + "learnable_ttt_lr_bias"] = torch.zeros(heads, 1)
    out[t + "ttt_norm_weight"] = 1 + n(heads, hd, std=0.1)
    out[t + "ttt_norm_bias"] = n(heads, hd)
    if unused:
        out[t + "post_norm.weight"] = torch.ones(dim)
        out[t + "post_norm.bias"] = torch.zeros(dim)
    shapes = list(zip(mlp_dims[:-1], mlp_dims[1:], strict=True))
    if len(shapes) == 2:
        out[t + "W1"], out[t + "b1"] = n(heads, *shapes[0]), torch.zeros(heads, 1, shapes[0][1])
        out[t + "W2"], out[t + "b2"] = n(heads, *shapes[1]), torch.zeros(heads, 1, shapes[1][1])
    else:
        for i, (a, b) in enumerate(shapes):
            out[f"{t}weights.{i}"], out[f"{t}biases.{i}"] = n(heads, a, b), torch.zeros(heads, 1, b)
    out[p + "forward_ssm_gating.gating_alpha"] = torch.full((dim,), float(alpha))
    out[p + "backward_ssm_gating.gating_alpha"] = torch.full((dim,), float(alpha))
    return out


def build(
    root: Path,
    mlp_layers: int = 2,
    weights: str = "lora.safetensors",
    layers: str = "2,3",
    mini_batch_size: int = 8,
    base_lr: float = 1.0,
    use_rope: bool = False,
    lora: bool = False,
    dim: int = 64,
    num_heads: int = 4,
    num_layers: int = 4,
    seed: int = 0,
    ttt_extra: dict | None = None,
    lm_extra: dict | None = None,
    dtype: torch.dtype = torch.bfloat16,
    unused: bool = True,
) -> dict:
    """Write base files (``moshi.safetensors``, ``mimi.safetensors``, ``mimi_config.json``) and a checkpoint
    folder ``run/checkpoints/checkpoint_000100/consolidated/``; returns their paths. ``ttt_extra``: more fields
    of training_config.json's ``ttt``; ``lm_extra``: of config.json; ``dtype``: of the saved tensors (theirs:
    bfloat16); ``unused``: write post_norm and wo too."""
    from moshi.models import loaders

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mimi_cfg, lm_kwargs = tiny_configs(dim, num_heads, num_layers)
    lm_kwargs.update(lm_extra or {})
    mimi = loaders.get_mimi(None, mimi_config=mimi_cfg)
    with torch.no_grad():  # an untrained Mimi's codebooks are all zero (every frame would be code 0):
        # moshi's own k-means init on noise, one residual level per pass, so that codes follow the audio
        z = mimi._encode_to_unquantized_latent(0.1 * torch.randn(1, 1, 1920 * 128, generator=gen))
        mimi.quantizer.train()
        for _ in range(mimi_cfg["quantizer"]["n_q"] + 1):
            mimi.quantizer(z, mimi.frame_rate)
        mimi.quantizer.eval()
    lm = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, dtype=torch.float32)
    paths = {"moshi": root / "moshi.safetensors", "mimi": root / "mimi.safetensors"}
    _save(lm.state_dict(), paths["moshi"])
    _save(mimi.state_dict(), paths["mimi"])
    paths["mimi_config"] = root / "mimi_config.json"
    paths["mimi_config"].write_text(json.dumps(mimi_cfg))

    ck = root / "run" / "checkpoints" / "checkpoint_000100" / "consolidated"
    ck.mkdir(parents=True)
    config = {**lm_kwargs, "lora": lora, "lora_rank": 4, "lora_scaling": 2.0}
    (ck / "config.json").write_text(json.dumps(config))
    ttt = {
        "enable": True,
        "layers": layers,
        "base_lr": base_lr,
        "mini_batch_size": mini_batch_size,
        "persistent_states": True,
        "initial_gating_alpha": 0.1,
        "ttt_mlp_layers": mlp_layers,
        "use_rope": use_rope,
        **(ttt_extra or {}),
    }
    (ck / "training_config.json").write_text(
        json.dumps({"ttt": ttt, "moshi_paths": {"hf_repo_id": "kyutai/moshiko-pytorch-bf16"}})
    )
    hd = dim // num_heads
    dims = [hd] + [4 * hd] * (mlp_layers - 1) + [hd]
    layer_ids = [int(x) for x in layers.split(",")]
    state = {}
    for L in layer_ids:
        state.update(ttt_tensors(L, dim, num_heads, dims, gen, unused=unused))
    if lora:  # the LoRA A/B of every Linear, as saved with the trainable modules
        wrapped = loaders.get_moshi_lm(None, lm_kwargs=config, dtype=torch.float32)
        for k, v in wrapped.state_dict().items():
            if ".lora_A." in k or ".lora_B." in k:
                state[_their_key(k, layer_ids)] = torch.randn(v.shape, generator=gen) * 0.01
    if weights == "consolidated.safetensors":  # the whole state dict, base layers under their TTT-layer names
        for k, v in lm.state_dict().items():
            theirs = _their_key(k, layer_ids)
            state[theirs] = v
            if theirs != k:  # their files repeat the base layer under the block
                state[theirs.replace(".original_layer.", ".seq_modeling_block.original_layer.", 1)] = v
    _save({k: v.to(dtype) for k, v in state.items()}, ck / weights)
    paths["checkpoint"] = ck
    return paths


def _their_key(key: str, layer_ids) -> str:
    """``transformer.layers.L.x`` of a TTT layer is ``transformer.layers.L.original_layer.x`` in their files."""
    parts = key.split(".")
    if key.startswith("transformer.layers.") and int(parts[2]) in layer_ids:
        return ".".join(parts[:3] + ["original_layer"] + parts[3:])
    return key


def cli_args(paths: dict) -> list[str]:
    """The command-line options that run this tiny model offline."""
    return [
        "--checkpoint",
        str(paths["checkpoint"]),
        "--moshi-weight",
        str(paths["moshi"]),
        "--mimi-weight",
        str(paths["mimi"]),
        "--mimi-config",
        str(paths["mimi_config"]),
        "--torch-device",
        "cpu",
    ]
