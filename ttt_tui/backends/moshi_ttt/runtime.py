"""How a Moshi-TTT checkpoint runs, and the model audit.

A checkpoint's tensors do not say everything: their inference script (``inference/run_inference_with_ttt.py``
in AlufRon/claude-web, ``moshi_ttt_try/moshi-finetune/``) sets the model up at run time, and in places it departs
from the training config and from what the checkpoint holds. ``resolve`` turns a checkpoint and a choice of
``follow`` into the settings ttt-tui runs with (``RunSetup``), and lists every departure it finds with its
consequence in one sentence (``AuditItem``): none of their tools tells them.

``follow="inference"`` (default): what their inference runs.
- ``TTTArgs`` is built without ``use_rope`` / ``rope_theta`` (lines 111-122): TTT RoPE off;
- the main transformer's RoPE ``max_period`` is 100000 (step 9, lines 322-327);
- attention ``context``: ``ttt.ttt_layer_context`` for the TTT layers, ``ttt.non_ttt_layer_context`` for the
  others, 3000 where the field is missing (step 10, lines 334-365); the depformer is left as it is (in moshi
  0.2.13 ``model.depformer`` has no ``.transformer``, so their attempt does nothing);
- ``override_gating_alpha_on_resume`` with ``initial_gating_alpha`` replaces every gate alpha (step 7);
- a missing ``base_lr`` / ``mini_batch_size`` is 0.001 / 32 there (lines 113-115);
- the model is cast to bfloat16 before the TTT weights are loaded (lines 237-266): on CUDA everything runs in
  bfloat16 (float32 on CPU, where their bfloat16 would only be slow).
``follow="training"``: the training config instead (RoPE as trained, the model's own max_period, the context
fields only where set, the TTTArgs defaults, the checkpoint's gate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .checkpoint import TTT_DEFAULTS, MoshiTTTCheckpoint

FOLLOW = ("inference", "training")
INFERENCE_MAX_PERIOD = 100_000
INFERENCE_CONTEXT = 3000  # their inference's default where training_config.json lacks the field
INFERENCE_DEFAULTS = {"base_lr": 0.001, "mini_batch_size": 32}  # theirs for a missing field


@dataclass(frozen=True)
class AuditItem:
    key: str  # a stable name, e.g. "double_step"
    finding: str  # what departs from what
    consequence: str  # what it does to the model or the numbers, one sentence

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return f"{self.finding}: {self.consequence}"


@dataclass(frozen=True)
class RunSetup:
    """The settings a run uses, beyond the checkpoint's tensors."""

    follow: str
    base_lr: float
    mini_batch_size: int
    use_rope: bool
    rope_theta: float
    max_period: float | None  # the main transformer's RoPE max_period (None: config.json's)
    ttt_context: int | None  # attention context of the TTT layers (None: config.json's)
    other_context: int | None  # of the main transformer's other layers (None: config.json's)
    gating_alpha: float | None  # replaces every gate alpha (None: the checkpoint's)
    write_back: bool  # each frame starts from the weights the previous one handed on
    dtype: str  # "bfloat16" on CUDA, "float32" on CPU

    def as_dict(self) -> dict:
        return asdict(self)


def _context(raw: dict, key: str, follow: str) -> tuple[int | None, bool]:
    """(context to set or None for config.json's, whether the field is null where their inference reads it)."""
    if follow == "inference":
        if key not in raw:
            return INFERENCE_CONTEXT, False
        value = raw[key]
        return (None, True) if value is None else (int(value), False)
    value = raw.get(key)
    return (None if value is None else int(value)), False


def resolve(
    ck: MoshiTTTCheckpoint,
    lm_kwargs: dict,
    follow: str = "inference",
    cuda: bool = False,
    persist: bool = False,
    gating_alpha: float | None = None,
    teacher_forced: bool = False,
) -> tuple[RunSetup, list[AuditItem]]:
    """The settings of a run of ``ck`` on the model of ``lm_kwargs`` (config.json), and the model audit.
    ``persist`` (``--ttt-persist``) and ``gating_alpha`` (``--gating-alpha``) are the user's own overrides;
    ``teacher_forced`` steps whole mini-batches (no pad rows: their frame-by-frame inference's padding does not
    apply)."""
    if follow not in FOLLOW:
        raise ValueError(f"follow must be one of {FOLLOW}, not {follow!r}")
    spec, raw, opts = ck.spec, ck.spec.raw, ck.spec.options
    inference = follow == "inference"
    audit: list[AuditItem] = []
    missing = [k for k in INFERENCE_DEFAULTS if raw.get(k) is None]
    base_lr, mb = float(opts["base_lr"]), int(opts["mini_batch_size"])
    if missing:
        if inference:
            base_lr = float(raw.get("base_lr") or INFERENCE_DEFAULTS["base_lr"])
            mb = int(raw.get("mini_batch_size") or INFERENCE_DEFAULTS["mini_batch_size"])
        both = ", ".join(f"{k} ({INFERENCE_DEFAULTS[k]:g} there, {TTT_DEFAULTS[k]:g} in training)" for k in missing)
        audit.append(
            AuditItem(
                "missing_fields",
                f"training_config.json lacks {both}",
                f"their inference and their training run different models; ttt-tui follows {follow} "
                f"(base_lr {base_lr:g}, mini-batch {mb})",
            )
        )
    n_layers = spec.n_mlp_layers
    unused = {L: names for L, names in ck.unused.items() if names}
    if unused:
        at_init = _post_norm_at_init(ck)
        state = (
            "post_norm still holds its init, ones and zeros"
            if at_init
            else "post_norm differs from its init, so these tensors did not come from their layer's training"
        )
        audit.append(
            AuditItem(
                "post_norm_wo_unused",
                f"post_norm and wo are in the checkpoint (layers {_ids(unused)}) but their layer never applies them "
                "(TTTWrapper.forward returns the merged heads)",
                f"they get no gradient in training and change nothing at inference ({state}); ttt-tui skips them too",
            )
        )
    if n_layers > 2:
        audit.append(
            AuditItem(
                "double_step",
                f"their {n_layers}-layer inner MLP builds its output from the already-updated weights and subtracts "
                "the update again: the output sees W - 2*dW while W - dW is written back",
                "each frame's TTT output takes twice the step the next frame starts from; ttt-tui computes the "
                "same, and lafter is measured at the written-back W - dW",
            )
        )
    if n_layers == 2:
        hidden = raw.get("ttt_mlp_hidden_dims")
        factor = float(opts["ttt_mlp_expansion_factor"])
        if hidden or factor != 4:
            asked = f"ttt_mlp_hidden_dims = {hidden}" if hidden else f"ttt_mlp_expansion_factor = {factor:g}"
            audit.append(
                AuditItem(
                    "expansion_ignored",
                    f"{asked}, but their 2-layer class always sizes its hidden layer 4 x head_dim = {spec.mlp_dims[1]}",
                    "the configured width was never trained or used; W1/W2 are loaded with the 4 x head_dim shape",
                )
            )
    if bool(opts["use_rope"]):
        if inference:
            audit.append(
                AuditItem(
                    "rope_dropped",
                    f"training used RoPE on the TTT queries and keys (use_rope, theta {float(opts['rope_theta']):g}), "
                    "but their inference builds TTTArgs without it: RoPE off",
                    "the pad rows' queries and keys differ from training (the real token sits at position 0, where "
                    "RoPE changes nothing), so every update differs; --follow training turns it on",
                )
            )
        else:
            audit.append(
                AuditItem(
                    "rope_dropped",
                    "following training_config.json: TTT RoPE on",
                    "their inference runs without it, so its numbers differ from this run's",
                )
            )
    use_rope = bool(opts["use_rope"]) and not inference
    persistent = raw.get("persistent_states", TTT_DEFAULTS["persistent_states"])
    if n_layers == 2 and not persist:
        audit.append(
            AuditItem(
                "no_write_back",
                "their 2-layer class never writes its update back: every frame restarts from the checkpoint's "
                "inner weights"
                + (" (although training_config.json says persistent_states = true)" if persistent else ""),
                "nothing learned in one frame reaches the next, so lprev equals l0 by construction; only lafter "
                "shows what one update learns (--ttt-persist carries the weights instead)",
            )
        )
    if n_layers > 2 and not persistent:
        audit.append(
            AuditItem(
                "no_write_back",
                "training_config.json says persistent_states = false, but their N-layer class writes its update "
                "back at inference anyway",
                "the inner weights move across the whole stream; l0 and lprev part after the first frame",
            )
        )
    if mb > 1 and not teacher_forced:
        audit.append(
            AuditItem(
                "pad_rows",
                f"each 80 ms frame is one token, right-padded with {mb - 1} zero rows to the mini-batch of {mb}",
                f"the pad rows (whose queries, keys and values are the projections' biases) make up {mb - 1} of the "
                f"{mb} rows of every update; ttt-tui's losses are over the real token only",
            )
        )
    config_context = lm_kwargs.get("context")
    ttt_ctx, ttt_null = _context(raw, "ttt_layer_context", follow)
    other_ctx, other_null = _context(raw, "non_ttt_layer_context", follow)
    nulls = [k for k, n in (("ttt_layer_context", ttt_null), ("non_ttt_layer_context", other_null)) if n]
    if nulls:
        audit.append(
            AuditItem(
                "context_null",
                f"training_config.json has {' and '.join(nulls)} = null: their inference sets the attention context "
                "to None, which moshi 0.2.13 cannot stream with (no KV-cache capacity)",
                f"their inference fails there; ttt-tui keeps config.json's context ({config_context})",
            )
        )
    changed = [
        f"{what} {ctx}"
        for what, ctx in (("TTT layers", ttt_ctx), ("other layers", other_ctx))
        if ctx is not None and ctx != config_context
    ]
    if changed:
        audit.append(
            AuditItem(
                "attention_context",
                f"attention context set at run time: {', '.join(changed)} (config.json: {config_context})",
                "attention looks back a different number of frames than config.json says"
                + (" (their inference's setting)" if inference else " (as in training)"),
            )
        )
    config_period = float(lm_kwargs.get("max_period", 10_000))
    max_period = INFERENCE_MAX_PERIOD if inference else None
    if max_period is not None and max_period != config_period:
        audit.append(
            AuditItem(
                "max_period",
                f"their inference sets the main transformer's RoPE max_period to {max_period} "
                f"(config.json and training: {config_period:g})",
                "every attention layer encodes positions differently from training; the depformer keeps its own",
            )
        )
    gate = None
    if inference and raw.get("override_gating_alpha_on_resume") and raw.get("initial_gating_alpha") is not None:
        gate = float(raw["initial_gating_alpha"])
        audit.append(
            AuditItem(
                "gating_override",
                f"override_gating_alpha_on_resume = true: their inference replaces every gate alpha by "
                f"initial_gating_alpha = {gate:g}",
                "the gate the training learned is not the one that runs",
            )
        )
    if gating_alpha is not None:
        gate = float(gating_alpha)
    ttt_dtypes = {v for v in ck.dtypes.values()}
    dtype = "bfloat16" if cuda else "float32"
    if "BF16" in ttt_dtypes or cuda:
        stored = "saved in bfloat16" if "BF16" in ttt_dtypes else f"saved as {', '.join(sorted(ttt_dtypes))}"
        if n_layers > 2:
            effect = (
                "the inner weights keep about 3 significant digits, and their N-layer update is computed and "
                "written back in bfloat16: a step smaller than about 1/256 of a weight is lost"
            )
        else:
            effect = "the inner weights keep about 3 significant digits (their 2-layer update is computed in float32)"
        run = "this run, on CUDA, does the same" if cuda else "this run, on CPU, computes in float32 from those values"
        audit.append(
            AuditItem(
                "bf16",
                f"TTT weights {stored}; their inference casts the model to bfloat16 before loading them, so they "
                "run in bfloat16",
                f"{effect}; {run}",
            )
        )
    setup = RunSetup(
        follow=follow,
        base_lr=base_lr,
        mini_batch_size=mb,
        use_rope=use_rope,
        rope_theta=float(opts["rope_theta"]),
        max_period=max_period,
        ttt_context=ttt_ctx,
        other_context=other_ctx,
        gating_alpha=gate,
        write_back=n_layers > 2 or bool(persist),
        dtype=dtype,
    )
    return setup, audit


def _ids(by_layer: dict) -> str:
    return ", ".join(str(L) for L in sorted(by_layer))


def _post_norm_at_init(ck: MoshiTTTCheckpoint) -> bool:
    tensors = ck.ttt_tensors(names=("post_norm.weight", "post_norm.bias"))
    for t in tensors.values():
        w, b = t.get("post_norm.weight"), t.get("post_norm.bias")
        if w is not None and not torch.all(w == 1):
            return False
        if b is not None and not torch.all(b == 0):
            return False
    return True
