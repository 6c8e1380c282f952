"""Reading our users' Moshi-TTT checkpoint folders.

``<run>/checkpoints/checkpoint_NNNNNN/consolidated/`` holds ``config.json`` (Moshi LM kwargs),
``training_config.json`` (its ``"ttt"`` object) and ``lora.safetensors`` or ``consolidated.safetensors``.
Their snapshot is inconsistent in places: configs are read defensively, defaults are taken where the reference
gives them, and anything unknown or inconsistent is refused with a message that names the field or the key,
never loaded half-way (no silent ``strict=False``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError

WEIGHT_FILES = ("lora.safetensors", "consolidated.safetensors")
PREFIX = "transformer.layers.{L}.seq_modeling_block."

# training_config.json["ttt"]: where a field is missing, what their training took (TTTArgs in their
# finetune/args.py). Their inference takes other defaults for some of them: see runtime.py.
TTT_DEFAULTS = {
    "enable": True,
    "base_lr": 1.0,
    "mini_batch_size": 16,
    "persistent_states": True,
    "initial_gating_alpha": 0.1,
    "override_gating_alpha_on_resume": False,
    "ttt_layer_context": None,
    "non_ttt_layer_context": 3000,
    "ttt_mlp_layers": 2,
    "ttt_mlp_hidden_dims": None,
    "ttt_mlp_expansion_factor": 4,
    "use_rope": False,
    "rope_theta": 10000.0,
}


@dataclass
class TTTSpec:
    """What the checkpoint says about its TTT layers."""

    layers: list[int]
    dim: int
    num_heads: int
    head_dim: int
    mlp_dims: list[int]  # inner MLP widths, input to output: [hd, ..., hd]
    options: dict = field(default_factory=dict)  # the "ttt" fields, defaults filled in
    raw: dict = field(default_factory=dict)  # the "ttt" object as written (missing and null fields stay so)

    @property
    def n_mlp_layers(self) -> int:
        return len(self.mlp_dims) - 1


@dataclass
class MoshiTTTCheckpoint:
    folder: Path
    lm_kwargs: dict
    training: dict
    spec: TTTSpec
    weights_file: Path
    hf_repo: str | None
    dtypes: dict = field(default_factory=dict)  # safetensors dtype name of each TTT tensor, by key
    unused: dict = field(default_factory=dict)  # per layer, the tensors their layer never applies (post_norm, wo)

    def ttt_tensors(self, names=None) -> dict[int, dict]:
        """Per TTT layer, its tensors by short name (``wq.weight``, ``W1``, ``weights.0``, ``gating_alpha``, and
        ``post_norm.weight`` ... where the file has them); ``names``: only these."""
        from safetensors import safe_open

        out: dict[int, dict] = {}
        with safe_open(str(self.weights_file), framework="pt") as f:
            present = set(f.keys())
            for L in self.spec.layers:
                keys = {**expected_keys(self.spec, L), **expected_keys(self.spec, L, unused=True)}.items()
                out[L] = {
                    name: f.get_tensor(key) for name, key in keys if key in present and (names is None or name in names)
                }
        return out


def read_json_object(path: Path, missing: str, label: str | None = None) -> dict:
    """A JSON file holding an object, or one line: ``missing`` when there is no such file, else what is wrong
    with it (``label`` names the file in those messages; default: its path)."""
    label = label or str(path)
    if not path.is_file():
        raise InputError(missing)
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{label} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{label} holds a {type(data).__name__}, expected a JSON object")
    return data


def _read_json(path: Path, what: str) -> dict:
    return read_json_object(
        path, f"{path.parent} has no {path.name} ({what}); give a checkpoint_NNNNNN/consolidated/ folder"
    )


def _check_numbers(path: Path, options: dict) -> None:
    """The fields their TTTArgs asserts on (``base_lr > 0``, ``mini_batch_size > 0``), and the inner depth."""
    import math

    checks = (
        ("mini_batch_size", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65536),
        ("base_lr", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0),
        ("ttt_mlp_layers", lambda v: isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 64),
    )
    for key, ok in checks:
        if not ok(options[key]):
            raise InputError(f"{path}: ttt.{key} = {options[key]!r} is not valid (their training refuses it too)")


def resolve_layers(spec, num_layers: int) -> list[int]:
    """``"all"``, ``"middle"`` (range(n/4, 3n/4)), ``"none"``, a comma list ``"29,30,31"`` or a JSON list."""
    if isinstance(spec, list):
        items = spec
    elif isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(num_layers))
        if s == "middle":
            return list(range(num_layers // 4, 3 * num_layers // 4))
        if s in ("none", ""):
            return []
        items = [x for x in s.split(",") if x.strip()]
    else:
        raise InputError(
            f'training_config.json: ttt.layers = {spec!r} is not understood (use "all", "middle", '
            '"none" or a list like "29,30,31")'
        )
    try:
        layers = sorted({int(x) for x in items})
    except (TypeError, ValueError):
        raise InputError(f"training_config.json: ttt.layers = {spec!r} is not a list of layer numbers") from None
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad:
        raise InputError(f"training_config.json: ttt.layers names {bad}, but the model has {num_layers} layers")
    return layers


def mlp_dims(head_dim: int, options: dict) -> list[int]:
    """Inner MLP widths. Their 2-layer class (``TTTMLP``, ``ttt_layer.py:616-619``) always has a hidden layer
    of ``4 * head_dim``, whatever ``ttt_mlp_expansion_factor`` or ``ttt_mlp_hidden_dims`` say; only the N-layer
    class follows them."""
    n = int(options["ttt_mlp_layers"])
    if n < 2:
        raise InputError(f"training_config.json: ttt.ttt_mlp_layers = {n}; the inner MLP needs at least 2 layers")
    if n == 2:
        return [head_dim, 4 * head_dim, head_dim]
    hidden = options.get("ttt_mlp_hidden_dims")
    if hidden:
        if len(hidden) != n - 1:
            raise InputError(
                f"training_config.json: ttt.ttt_mlp_hidden_dims has {len(hidden)} entries, "
                f"ttt_mlp_layers = {n} needs {n - 1}"
            )
        return [head_dim, *map(int, hidden), head_dim]
    return [head_dim] + [int(head_dim * float(options["ttt_mlp_expansion_factor"]))] * (n - 1) + [head_dim]


UNUSED = ("post_norm.weight", "post_norm.bias", "wo.weight", "wo.bias")  # in their files, never applied


def expected_keys(spec: TTTSpec, L: int, unused: bool = False) -> dict[str, str]:
    """Short name -> state-dict key, for the TTT tensors of layer ``L`` that their layer uses; with ``unused``,
    for those it carries but never applies (``post_norm``, ``wo``: only the unused ``TTTBase.forward`` does)."""
    p = PREFIX.format(L=L)
    t = p + "ttt_layer.ttt."
    if unused:
        return {name: t + name for name in UNUSED}
    keys = {f"{m}.{w}": f"{t}{m}.{w}" for m in ("wq", "wk", "wv") for w in ("weight", "bias")}
    for name in ("learnable_ttt_lr_weight", "learnable_ttt_lr_bias", "ttt_norm_weight", "ttt_norm_bias"):
        keys[name] = t + name
    if spec.n_mlp_layers == 2:
        keys.update({n: t + n for n in ("W1", "b1", "W2", "b2")})
    else:
        for i in range(spec.n_mlp_layers):
            keys[f"weights.{i}"] = f"{t}weights.{i}"
            keys[f"biases.{i}"] = f"{t}biases.{i}"
    keys["gating_alpha"] = p + "forward_ssm_gating.gating_alpha"
    return keys


def expected_shapes(spec: TTTSpec) -> dict[str, tuple]:
    D, H, hd = spec.dim, spec.num_heads, spec.head_dim
    shapes = {f"{m}.weight": (D, D) for m in ("wq", "wk", "wv", "wo")}
    shapes.update({f"{m}.bias": (D,) for m in ("wq", "wk", "wv", "wo")})
    shapes.update(
        {
            "learnable_ttt_lr_weight": (H, 1, D),
            "learnable_ttt_lr_bias": (H, 1),
            "ttt_norm_weight": (H, hd),
            "ttt_norm_bias": (H, hd),
            "post_norm.weight": (D,),
            "post_norm.bias": (D,),
            "gating_alpha": (D,),
        }
    )
    dims = spec.mlp_dims
    if spec.n_mlp_layers == 2:
        shapes.update(
            {"W1": (H, dims[0], dims[1]), "b1": (H, 1, dims[1]), "W2": (H, dims[1], dims[2]), "b2": (H, 1, dims[2])}
        )
    else:
        for i in range(spec.n_mlp_layers):
            shapes[f"weights.{i}"] = (H, dims[i], dims[i + 1])
            shapes[f"biases.{i}"] = (H, 1, dims[i + 1])
    return shapes


def read_checkpoint(folder: str | Path) -> MoshiTTTCheckpoint:
    """Read and validate a checkpoint folder: configs, TTT layers, and every TTT tensor's key and shape."""
    folder = Path(folder)
    if folder.is_file():
        raise InputError(
            f"--checkpoint {folder} is a file; give its folder (<run>/checkpoints/checkpoint_NNNNNN/consolidated/)"
        )
    if not folder.is_dir():
        raise InputError(
            f"--checkpoint {folder}: no such folder (give <run>/checkpoints/checkpoint_NNNNNN/consolidated/)"
        )
    lm = _read_json(folder / "config.json", "the Moshi LM kwargs")
    training = _read_json(folder / "training_config.json", "the training arguments")
    for k in ("dim", "num_heads", "num_layers"):
        if not isinstance(lm.get(k), int) or lm[k] <= 0:
            raise InputError(f"{folder / 'config.json'}: {k} is missing or not a positive integer")
    D, H, n_layers = lm["dim"], lm["num_heads"], lm["num_layers"]
    if D % H:
        raise InputError(f"{folder / 'config.json'}: dim {D} is not a multiple of num_heads {H}")
    ttt = training.get("ttt")
    if not isinstance(ttt, dict):
        raise InputError(f'{folder / "training_config.json"} has no "ttt" object: not a TTT checkpoint')
    if "layers" not in ttt:
        raise InputError(f"{folder / 'training_config.json'}: ttt.layers is missing (which layers are TTT?)")
    options = {**TTT_DEFAULTS, **{k: v for k, v in ttt.items() if v is not None or k not in TTT_DEFAULTS}}
    _check_numbers(folder / "training_config.json", options)
    layers = resolve_layers(options["layers"], n_layers) if options["enable"] else []
    if not layers:
        raise InputError(f"{folder / 'training_config.json'}: ttt is disabled or names no layer; nothing to monitor")
    spec = TTTSpec(
        layers=layers,
        dim=D,
        num_heads=H,
        head_dim=D // H,
        mlp_dims=mlp_dims(D // H, options),
        options=options,
        raw=dict(ttt),
    )
    files = [folder / f for f in WEIGHT_FILES if (folder / f).exists()]
    if not files:
        raise InputError(f"{folder} holds neither {' nor '.join(WEIGHT_FILES)}")
    hf_repo = (training.get("moshi_paths") or {}).get("hf_repo_id")
    ck = MoshiTTTCheckpoint(folder, lm, training, spec, files[0], hf_repo)
    validate_tensors(ck)
    return ck


def validate_tensors(ck: MoshiTTTCheckpoint) -> None:
    """Every TTT tensor their layer uses present with its expected shape, and ``post_norm`` / ``wo`` (unused)
    mis-shaped nowhere; otherwise one message naming the keys. Records dtypes and which layers carry the unused
    tensors (the model audit reports both)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(ck.weights_file), framework="pt") as f:
            have = {}
            for k in f.keys():
                sl = f.get_slice(k)
                have[k] = (tuple(sl.get_shape()), sl.get_dtype())
    except (SafetensorError, OSError) as e:
        raise InputError(f"{ck.weights_file} is not a readable safetensors file ({e})") from None
    shapes = expected_shapes(ck.spec)
    missing, wrong = [], []
    for L in ck.spec.layers:
        for unused in (False, True):
            for name, key in expected_keys(ck.spec, L, unused=unused).items():
                if key not in have:
                    if not unused:
                        missing.append(key)
                    continue
                if have[key][0] != shapes[name]:
                    wrong.append(f"{key} {list(have[key][0])} (expected {list(shapes[name])})")
                ck.dtypes[key] = have[key][1]
                if unused:
                    ck.unused.setdefault(L, []).append(name)
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if wrong:
            parts.append(f"{len(wrong)} mis-shaped: {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
        raise InputError(
            f"{ck.weights_file.name} does not match its training_config.json (TTT layers "
            f"{ck.spec.layers}, inner MLP {ck.spec.mlp_dims}): {'; '.join(parts)}"
        )
