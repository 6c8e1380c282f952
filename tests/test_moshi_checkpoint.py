"""Moshi-TTT checkpoint folders in the exact key layout of the reference, built at test time (no download)."""

import json

import moshi_tiny
import pytest
import torch
from safetensors.torch import save_file

from ttt_tui.backends.moshi_ttt.checkpoint import expected_keys, read_checkpoint, resolve_layers
from ttt_tui.errors import InputError

DIM, HEADS, LAYERS = 64, 4, 8
HD = DIM // HEADS


def tensors_for_layer(L, mlp_layers=2, expansion=4, hidden=None, dtype=torch.bfloat16):
    dims = [HD, *(hidden or [HD * expansion] * (mlp_layers - 1)), HD]
    out = moshi_tiny.ttt_tensors(L, DIM, HEADS, dims, torch.Generator().manual_seed(L))
    return {k: v.to(dtype) for k, v in out.items()}


def make_checkpoint(
    folder, layers="5,6,7", mlp_layers=2, ttt_extra=None, weights="lora.safetensors", tensors=None, **kw
):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps(
            {"dim": DIM, "num_heads": HEADS, "num_layers": LAYERS, "context": 3000, "lora": True, "lora_rank": 8}
        )
    )
    ttt = {
        "enable": True,
        "layers": layers,
        "base_lr": 1.0,
        "mini_batch_size": 64,
        "ttt_mlp_layers": mlp_layers,
        **(ttt_extra or {}),
    }
    (folder / "training_config.json").write_text(
        json.dumps({"ttt": ttt, "moshi_paths": {"hf_repo_id": "kyutai/moshiko-pytorch-bf16"}})
    )
    if tensors is None:
        tensors = {}
        for L in resolve_layers(layers, LAYERS):
            tensors.update(tensors_for_layer(L, mlp_layers, **kw))
    save_file(tensors, str(folder / weights))
    return folder


def test_two_layer_lora_checkpoint(tmp_path):
    ck = read_checkpoint(make_checkpoint(tmp_path / "ck"))
    assert ck.spec.layers == [5, 6, 7] and ck.spec.head_dim == HD and ck.spec.mlp_dims == [HD, 4 * HD, HD]
    assert ck.hf_repo == "kyutai/moshiko-pytorch-bf16" and ck.weights_file.name == "lora.safetensors"
    assert ck.spec.options["non_ttt_layer_context"] == 3000  # default for a field older checkpoints lack
    t = ck.ttt_tensors()
    assert set(t) == {5, 6, 7} and t[6]["W1"].shape == (HEADS, HD, 4 * HD) and t[6]["W1"].dtype == torch.bfloat16
    assert t[5]["gating_alpha"].shape == (DIM,)


def test_three_layer_inner_mlp_with_hidden_dims(tmp_path):
    ck = read_checkpoint(
        make_checkpoint(
            tmp_path / "ck", layers="middle", mlp_layers=3, ttt_extra={"ttt_mlp_hidden_dims": [32, 48]}, hidden=[32, 48]
        )
    )
    assert ck.spec.layers == [2, 3, 4, 5] and ck.spec.mlp_dims == [HD, 32, 48, HD]
    assert ck.ttt_tensors()[3]["weights.2"].shape == (HEADS, 48, HD)


def test_consolidated_file_with_the_whole_state_dict(tmp_path):
    tensors = tensors_for_layer(1)
    tensors["transformer.layers.1.seq_modeling_block.original_layer.self_attn.in_proj_weight"] = torch.randn(8, 8)
    tensors["transformer.layers.0.self_attn.in_proj_weight"] = torch.randn(8, 8)
    ck = read_checkpoint(
        make_checkpoint(tmp_path / "ck", layers="1", weights="consolidated.safetensors", tensors=tensors)
    )
    assert ck.weights_file.name == "consolidated.safetensors" and ck.spec.layers == [1]


def test_missing_key_is_named(tmp_path):
    tensors = {}
    for L in (5, 6, 7):
        tensors.update(tensors_for_layer(L))
    del tensors["transformer.layers.6.seq_modeling_block.ttt_layer.ttt.W2"]
    with pytest.raises(InputError, match=r"1 missing: transformer\.layers\.6\.seq_modeling_block\.ttt_layer\.ttt\.W2"):
        read_checkpoint(make_checkpoint(tmp_path / "ck", tensors=tensors))


def test_mis_shaped_key_is_named(tmp_path):
    """A 3-layer training config over 2-layer tensors: the names differ; an expansion mismatch: the shapes."""
    with pytest.raises(InputError, match=r"weights\.0"):
        read_checkpoint(
            make_checkpoint(
                tmp_path / "a",
                mlp_layers=3,
                tensors={k: v for L in (5, 6, 7) for k, v in tensors_for_layer(L, 2).items()},
            )
        )
    with pytest.raises(
        InputError,
        match=r"mis-shaped: transformer\.layers\.5\..*W1 \[4, 16, 32\] "
        r"\(expected \[4, 16, 64\]\)",
    ):
        read_checkpoint(
            make_checkpoint(
                tmp_path / "b",
                ttt_extra={"ttt_mlp_expansion_factor": 4},
                tensors={k: v for L in (5, 6, 7) for k, v in tensors_for_layer(L, 2, expansion=2).items()},
            )
        )


@pytest.mark.parametrize(
    "spec,expected",
    [("all", list(range(8))), ("middle", [2, 3, 4, 5]), ("none", []), ("29,30", None), ([1, 3], [1, 3]), ("a,b", None)],
)
def test_layer_selection(spec, expected):
    if expected is None:
        with pytest.raises(InputError, match="ttt.layers"):
            resolve_layers(spec, 8)
    else:
        assert resolve_layers(spec, 8) == expected


def test_folder_problems(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        read_checkpoint(tmp_path / "nope")
    ck = make_checkpoint(tmp_path / "ck")
    (ck / "training_config.json").write_text(json.dumps({"lr": 1e-4}))
    with pytest.raises(InputError, match='no "ttt" object'):
        read_checkpoint(ck)
    (ck / "training_config.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_checkpoint(ck)
    (ck / "training_config.json").write_text(json.dumps({"ttt": {"enable": True, "layers": "none"}}))
    with pytest.raises(InputError, match="names no layer"):
        read_checkpoint(ck)
    (ck / "lora.safetensors").unlink()
    (ck / "training_config.json").write_text(json.dumps({"ttt": {"layers": "5"}}))
    with pytest.raises(InputError, match="neither lora.safetensors nor consolidated.safetensors"):
        read_checkpoint(ck)


def test_expected_keys_cover_the_reference_layout():
    ck_spec = type("S", (), {"n_mlp_layers": 2})()
    keys = expected_keys(ck_spec, 29)
    assert keys["W1"] == "transformer.layers.29.seq_modeling_block.ttt_layer.ttt.W1"
    assert keys["gating_alpha"] == "transformer.layers.29.seq_modeling_block.forward_ssm_gating.gating_alpha"
    assert "post_norm.weight" not in keys and "wo.weight" not in keys  # their layer never applies them
    unused = expected_keys(ck_spec, 29, unused=True)
    assert unused["post_norm.weight"].endswith("ttt_layer.ttt.post_norm.weight")
    assert unused["wo.bias"].endswith("ttt_layer.ttt.wo.bias")


def test_two_layer_hidden_size_is_four_head_dims_whatever_the_expansion_factor(tmp_path):
    """Their TTTMLP sizes W1/W2 with 4 * head_dim (moshi_ttt/models/ssm/ttt_layer.py:616-619); only the N-layer
    class follows ttt_mlp_expansion_factor (ttt_layer.py:514-525)."""
    ck = read_checkpoint(make_checkpoint(tmp_path / "a", ttt_extra={"ttt_mlp_expansion_factor": 2.0}))
    assert ck.spec.mlp_dims == [HD, 4 * HD, HD]
    three = make_checkpoint(
        tmp_path / "b",
        mlp_layers=3,
        ttt_extra={"ttt_mlp_expansion_factor": 2.0},
        tensors={k: v for L in (5, 6, 7) for k, v in tensors_for_layer(L, 3, expansion=2).items()},
    )
    assert read_checkpoint(three).spec.mlp_dims == [HD, 2 * HD, 2 * HD, HD]


def test_post_norm_and_wo_are_optional_but_checked(tmp_path):
    plain = {
        k: v for L in (5, 6, 7) for k, v in tensors_for_layer(L).items() if ".post_norm." not in k and ".wo." not in k
    }
    ck = read_checkpoint(make_checkpoint(tmp_path / "a", tensors=plain))
    assert ck.unused == {}
    full = read_checkpoint(make_checkpoint(tmp_path / "b"))
    assert sorted(full.unused[5]) == ["post_norm.bias", "post_norm.weight", "wo.bias", "wo.weight"]
    bad = {**plain, "transformer.layers.6.seq_modeling_block.ttt_layer.ttt.post_norm.weight": torch.ones(3)}
    with pytest.raises(InputError, match=r"post_norm\.weight \[3\] \(expected \[64\]\)"):
        read_checkpoint(make_checkpoint(tmp_path / "c", tensors=bad))
