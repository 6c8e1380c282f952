"""The backend of our users' Moshi-TTT checkpoints: Mimi + Moshi ``LMGen``, frame by frame, as their inference
(``inference/run_inference_with_ttt.py``) runs it, with the run-time settings of ``runtime.resolve``; or, with
``teacher_forced``, the recording itself as Moshi's audio stream, a mini-batch of frames per step, with the
outer loss per position (``teacher_forced``).

Building it is cheap and fails fast (the checkpoint is read and validated, the base model's files located in
the Hugging Face cache or given locally, the model audit made); the model itself is loaded by
``prepare_thread``, in the process and thread that runs inference, so the dashboard's own process never holds a
second copy of a 7B model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..base import Backend
from .checkpoint import MoshiTTTCheckpoint, read_checkpoint, read_json_object
from .inner_loop import SIGNAL_NAMES
from .runtime import resolve

INSTALL_HINT = 'pip install --no-deps "moshi==0.2.13" && pip install -e ".[moshi]"'
FRAME_SAMPLES = 1920  # 80 ms at 24 kHz: one Mimi frame, one LMGen step
# keys of moshi's config.json that are not LMModel arguments (moshi.models.loaders.CheckpointInfo pops them)
CONFIG_META = (
    "moshi_name",
    "mimi_name",
    "mimi_config_name",
    "tokenizer_name",
    "lora_name",
    "model_type",
    "lm_gen_config",
    "tts_config",
    "stt_config",
    "model_id",
)
DEFAULT_SEED = 42299
LM_GEN_KEYS = ("temp", "temp_text", "top_k", "top_k_text", "cfg_coef")  # config.json lm_gen_config -> LMGen


def import_moshi() -> None:
    """Import the ``moshi`` package, or say in one line saying how to install it (its pins would replace our torch)."""
    os.environ.setdefault("NO_TORCH_COMPILE", "1")  # else the first step compiles for ~20 s, even on CPU
    try:
        from moshi.models import loaders  # noqa: F401
    except ImportError as e:
        raise InputError(
            f"--checkpoint needs the moshi package, which is not installed ({e}); install it with: {INSTALL_HINT}"
        ) from None


def _json(path: str | Path, flag: str) -> dict:
    p = Path(path)
    return read_json_object(p, f"{flag} {p}: no such file", label=f"{flag} {p}")


def _local(path: str, flag: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{flag} {p}: no such file")
    return p


def hf_file(repo: str, name: str) -> Path:
    """A file of the base model's repository: from the Hugging Face cache first (no network at all), else one
    quiet download attempt with a short timeout (a GPU node without network must not wait through the client's
    retries and warnings). One line when neither works."""
    import logging

    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    missing = InputError(
        f"base model {repo}/{name} is not in the Hugging Face cache and cannot be downloaded here (offline?); "
        f"fetch it once with `huggingface-cli download {repo}`, or give --moshi-weight and --mimi-weight"
    )
    try:
        return Path(hf_hub_download(repo, name, local_files_only=True))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise missing from None
    except (HFValidationError, OSError) as e:
        raise InputError(f"--hf-repo {repo}: cannot get {name} ({type(e).__name__}: {e})") from None
    if not _reachable(constants.ENDPOINT):  # decide offline at once: the client would retry for ~25 s
        raise missing
    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "urllib3", "requests")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        return Path(hf_hub_download(repo, name, etag_timeout=5))
    except LocalEntryNotFoundError:
        raise missing from None
    except (HfHubHTTPError, HFValidationError, OSError) as e:
        raise InputError(f"--hf-repo {repo}: cannot get {name} ({type(e).__name__}: {e})") from None
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """One request, no retries: can the hub be reached at all?"""
    import requests

    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


WEIGHT_MARKERS = {"Moshi": ("text_emb", "transformer", "depformer"), "Mimi": ("encoder", "decoder", "quantizer")}


def _check_weights(path: Path | None, flag: str, want: str, other: str) -> None:
    """The file is a readable safetensors file of the right model; one line naming it otherwise (a corrupt
    download, Moshi's and Mimi's files swapped)."""
    if path is None:
        return
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            tops = {k.split(".", 1)[0] for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{flag} {path} is not a readable safetensors file ({e}); download it again") from None
    if not tops & set(WEIGHT_MARKERS[want]):
        looks = f"it holds {other}'s weights: are --moshi-weight and --mimi-weight swapped?"
        if not tops & set(WEIGHT_MARKERS[other]):
            looks = f"none of its {len(tops)} top-level names ({', '.join(sorted(tops)[:4])} ...) is {want}'s"
        raise InputError(f"{flag} {path} is not {want}'s weights: {looks}")


def lm_parameters(lm: dict) -> int:
    """About how many parameters moshi's LMModel has for these kwargs (within 1 % for Moshi 7B and the tests'
    tiny model): attention 4 D^2 and a gated feed-forward per layer, the depformer's per-step weights, the
    embeddings and output heads. Instant, allocates nothing: absurd configs are refused before building."""

    def ff(d, hidden):  # moshi's ActivationGating: 2/3 of dim_feedforward (21/8 d for 4 d), in 2x, out 1x
        if lm.get("gating", "none") == "none":
            return 2 * d * hidden
        return 3 * d * ((21 * d) // 8 if hidden == 4 * d else (2 * hidden) // 3)

    D, N = int(lm.get("dim", 4096)), int(lm.get("num_layers", 32))
    main = N * (4 * D * D + ff(D, int(lm.get("hidden_scale", 4.125) * D)))
    Dd, Nd, dep_q = int(lm.get("depformer_dim", 1024)), int(lm.get("depformer_num_layers", 6)), int(lm.get("dep_q", 8))
    steps = dep_q if lm.get("depformer_weights_per_step", False) else 1
    dff = lm.get("depformer_dim_feedforward") or int(lm.get("hidden_scale", 4.125) * Dd)
    dep = Nd * steps * (4 * Dd * Dd + ff(Dd, int(dff)))
    card, text_card, n_q = int(lm.get("card", 2048)), int(lm.get("text_card", 32000)), int(lm.get("n_q", 16))
    emb = (2 * text_card + 1) * D + n_q * (card + 1) * D + dep_q * (D * Dd + (card + 1) * Dd + Dd * card)
    return main + dep + emb


def available_memory(device: str) -> int | None:
    """Bytes a model may take on ``device``: the GPU's total memory, or the host's available memory."""
    import torch

    try:
        if device.startswith("cuda"):
            return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError, AssertionError):
        return None
    return None


class MoshiBackend(Backend):
    """Options: ``follow`` runs the model as their inference does (``"inference"``) or as their training config
    says (``"training"``, see ``runtime``); ``persist`` carries the inner weights across frames for every layer
    (their 2-layer class resets them every step); ``gating_alpha`` replaces the gate alpha; ``greedy`` decodes
    with argmax, else sampling seeded by ``seed``; ``teacher_forced`` feeds the recording's codes instead of
    generating (``teacher_forced.py``); ``record_losses=False`` is the uninstrumented path and
    ``random_base=True`` a randomly initialised base Moshi and Mimi (benchmarks of a Moshi-sized model without
    its 16 GB of weights)."""

    def __init__(
        self,
        checkpoint: str | Path,
        hf_repo: str | None = None,
        moshi_weight: str | None = None,
        mimi_weight: str | None = None,
        config: str | None = None,
        mimi_config: str | None = None,
        device: str | None = None,
        persist: bool = False,
        gating_alpha: float | None = None,
        record_losses: bool = True,
        seed: int = DEFAULT_SEED,
        random_base: bool = False,
        follow: str = "inference",
        greedy: bool = False,
        teacher_forced: bool = False,
    ):
        import_moshi()
        import torch
        from moshi.models import loaders

        self.ck: MoshiTTTCheckpoint = read_checkpoint(checkpoint)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.persist_flag, self.gating_alpha = bool(persist), gating_alpha
        self.record_losses, self.seed, self.greedy = record_losses, int(seed), bool(greedy)
        self.teacher_forced = bool(teacher_forced)
        lm = dict(_json(config, "--config") if config else self.ck.lm_kwargs)
        gen = lm.get("lm_gen_config") or {}
        self.lm_gen_config = {k: gen[k] for k in LM_GEN_KEYS if k in gen}  # their LMGen(model, **lm_gen_config)
        for k in CONFIG_META:
            lm.pop(k, None)
        self.lm_kwargs = lm
        need = lm_parameters(lm) * (2 if self.dtype == torch.bfloat16 else 4)
        have = available_memory(self.device)
        if not random_base and have is not None and need > have:
            raise InputError(
                f"the Moshi config ({lm.get('num_layers')} layers of dim {lm.get('dim')}) needs about "
                f"{need / 2**30:.1f} GiB for its weights in {str(self.dtype).removeprefix('torch.')}, more than the "
                f"{have / 2**30:.1f} GiB {'of the GPU' if self.device.startswith('cuda') else 'of memory available'}"
                "; check --config / config.json, or use a machine with more memory"
            )
        self.setup, self._audit = resolve(
            self.ck,
            lm,
            follow,
            self.device.startswith("cuda"),
            persist=self.persist_flag,
            gating_alpha=gating_alpha,
            teacher_forced=self.teacher_forced,
        )
        self.mimi_config = _json(mimi_config, "--mimi-config") if mimi_config else loaders._mimi_config
        self.consolidated = self.ck.weights_file.name == "consolidated.safetensors"
        self.hf_repo = hf_repo or self.ck.hf_repo
        needs_hf = mimi_weight is None or (moshi_weight is None and not self.consolidated)
        if random_base:
            needs_hf, mimi_weight, moshi_weight = False, None, None
        self.base_source = "random (benchmark)" if random_base else (self.hf_repo if needs_hf else "local files")
        if needs_hf and not self.hf_repo:
            raise InputError(
                "no base model: training_config.json names no moshi_paths.hf_repo_id; "
                "give --hf-repo, or --moshi-weight and --mimi-weight"
            )
        if mimi_weight:
            self.mimi_file = _local(mimi_weight, "--mimi-weight")
        else:
            self.mimi_file = None if random_base else hf_file(self.hf_repo, loaders.MIMI_NAME)
        if self.consolidated or random_base:  # the whole state dict is in the checkpoint, or none is wanted
            self.moshi_file = None
        else:
            self.moshi_file = (
                _local(moshi_weight, "--moshi-weight") if moshi_weight else hf_file(self.hf_repo, loaders.MOSHI_NAME)
            )
        _check_weights(self.moshi_file, "--moshi-weight", "Moshi", "Mimi")
        _check_weights(self.mimi_file, "--mimi-weight", "Mimi", "Moshi")
        spec = self.ck.spec
        self.mini_batch_size = self.setup.mini_batch_size
        kind = f"{spec.n_mlp_layers}-layer inner MLP {spec.mlp_dims}"
        self.name = f"Moshi-TTT ({kind}, TTT layers {','.join(map(str, spec.layers))})"
        self.sample_rate = int(self.mimi_config["sample_rate"])
        self.frame_rate = float(self.mimi_config["frame_rate"])
        self.frame_samples = int(round(self.sample_rate / self.frame_rate))
        self.persist = self.setup.write_back
        self._gates = self._gate_stats()
        self.model = None
        self._out_pcm: list[np.ndarray] = []
        self._signals: dict[int, np.ndarray] = {}
        self._outer: list = []
        self.outer_loss = self.teacher_forced

    # -- facts known without loading the model ------------------------------------------------------------
    @property
    def layer_ids(self) -> list[int]:
        return list(self.ck.spec.layers)

    @property
    def min_audio_s(self) -> float:
        if self.teacher_forced:  # one whole mini-batch of frames: no step is padded
            return self.mini_batch_size * self.frame_samples / self.sample_rate
        return self.frame_samples / self.sample_rate  # one frame: every step is padded to a whole mini-batch

    signal_names = SIGNAL_NAMES
    signal_labels = {
        "grad_norm": {"short": "|grad|", "long": "inner gradient norm"},
        "weight_change": {"short": "|W-W0|/|W0|", "long": "||W_t - W0|| / ||W0||"},
        "step_size": {"short": "step", "long": "mean step size (lr)"},
    }

    def _gate_stats(self) -> dict[int, dict]:
        """Read from the checkpoint, without loading the model (the dashboard's process shows them too)."""
        import torch

        from .layer import effective_gate

        out = {}
        for L, t in self.ck.ttt_tensors(names=("gating_alpha",)).items():
            alpha = t["gating_alpha"].to(getattr(torch, self.setup.dtype))  # as it runs
            g = effective_gate(alpha, self.setup.gating_alpha).float()
            out[L] = {"mean": float(g.mean()), "min": float(g.min()), "max": float(g.max())}
        return out

    def notes(self) -> list[str]:
        """ttt-tui's own choices for this run (the model audit says what their code does)."""
        if self.teacher_forced:
            C = self.mini_batch_size
            out = [
                "teacher-forced: the recording's own Mimi codes are Moshi's audio stream (codebooks 1-8; text and the "
                "user's stream token 0, as their paper_metrics.py), nothing is sampled",
                f"teacher-forced: the model steps {C} frames at a time (one mini-batch), so no pad rows enter an "
                f"update; the last frames of a stream short of {C} are not evaluated",
                "outer loss per position: cross-entropy over the 8 audio codebooks (masked as their "
                "_compute_position_loss), with Moshi's acoustic delays over the whole stream",
            ]
        else:
            out = ["the first frame is stepped twice, as their inference does: N frames give N+1 positions"]
        if self.persist_flag and self.ck.spec.n_mlp_layers == 2:
            out.append(
                "--ttt-persist: inner weights carried across frames (their 2-layer class resets them every step)"
            )
        if self.gating_alpha is not None:
            out.append(f"--gating-alpha {self.gating_alpha:g} replaces every gate alpha")
        if self.setup.follow == "training":
            out.append("--follow training: RoPE, attention context and max_period as the training config says")
        if not self.teacher_forced:
            out.append(
                "decoding: greedy (argmax)"
                if self.greedy
                else f"decoding: sampling, seed {self.seed} (same audio, same run)"
            )
        return out

    def audit(self) -> list[dict]:
        return [a.as_dict() for a in self._audit]

    def describe(self) -> dict:
        spec = self.ck.spec
        return {
            **super().describe(),
            "checkpoint": str(self.ck.folder),
            "weights_file": self.ck.weights_file.name,
            "base_model": self.base_source,
            "moshi_weight": str(self.moshi_file) if self.moshi_file else None,
            "mimi_weight": str(self.mimi_file) if self.mimi_file else None,
            "ttt_layers": spec.layers,
            "inner_mlp_dims": spec.mlp_dims,
            "mini_batch_size": self.mini_batch_size,
            "base_lr": self.setup.base_lr,
            "use_rope": self.setup.use_rope,
            "persist": self.persist,
            "gating_alpha_override": self.gating_alpha,
            "effective_gate": {str(k): v for k, v in self._gates.items()},
            "dtype": str(self.dtype).removeprefix("torch."),
            "frame_rate": self.frame_rate,
            "setup": self.setup.as_dict(),
            "decoding": "teacher-forced"
            if self.teacher_forced
            else {"greedy": self.greedy, "seed": None if self.greedy else self.seed, **self.lm_gen_config},
            "teacher_forced": self.teacher_forced,
        }

    # -- the model ------------------------------------------------------------------------------------------
    def prepare_thread(self) -> None:
        if self.model is None:
            self.load()

    def load(self) -> None:
        from moshi.models import loaders
        from moshi.models.lm import LMGen

        from .layer import MoshiTTT, TTTHybridLayer

        lm_kwargs = self.lm_kwargs
        n_cb = max(lm_kwargs.get("dep_q", 8), lm_kwargs.get("n_q", 16) - lm_kwargs.get("dep_q", 8))
        try:
            self.mimi = loaders.get_mimi(self.mimi_file, self.mimi_config, device=self.device, num_codebooks=n_cb)
            lm = loaders.get_moshi_lm(self.moshi_file, lm_kwargs=lm_kwargs, device=self.device, dtype=self.dtype)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"cannot build the base model from its files and config ({type(e).__name__}: {e})"
            ) from None
        spec, setup = self.ck.spec, self.setup
        for L in spec.layers:
            ttt = MoshiTTT(
                spec.dim,
                spec.num_heads,
                spec.mlp_dims,
                setup.base_lr,
                setup.mini_batch_size,
                use_rope=setup.use_rope,
                rope_theta=setup.rope_theta,
                write_back=setup.write_back,
                device=self.device,
                dtype=self.dtype,
            )
            lm.transformer.layers[L] = TTTHybridLayer(lm.transformer.layers[L], ttt, L)
        self._load_checkpoint(lm)
        apply_run_settings(lm, setup, spec.layers)
        self.layers = {L: lm.transformer.layers[L] for L in spec.layers}
        for layer in self.layers.values():
            layer.ttt.record = self.record_losses
            layer.gating.override = setup.gating_alpha
        lm.eval()
        self.model = lm
        self.mimi.streaming_forever(1)
        if self.teacher_forced:  # the main transformer streams (KV cache, RoPE offsets); no LMGen, no sampling
            from .teacher_forced import TeacherForcedStream

            lm.streaming_forever(1)
            self.tf = TeacherForcedStream(lm)
        else:
            kw = dict(self.lm_gen_config)
            if self.greedy:
                kw["use_sampling"] = False
            self.lm_gen = LMGen(lm, **kw)
            self.lm_gen.streaming_forever(1)
        self.reset()

    def _load_checkpoint(self, lm) -> None:
        """The checkpoint's tensors into the model. Their TTT layers' keys map as they are (``original_layer.*``,
        ``seq_modeling_block.*``); ``seq_modeling_block.original_layer.*`` repeats ``original_layer.*`` and is
        skipped. A key that matches nothing is refused by name (never a silent ``strict=False``); a
        consolidated file must also cover every tensor of the model."""
        from safetensors.torch import load_file

        from .checkpoint import UNUSED

        layers = set(self.ck.spec.layers)
        unused = tuple(f"seq_modeling_block.ttt_layer.ttt.{n}" for n in UNUSED)  # never applied (runtime audit)
        state = {}
        for key, value in load_file(str(self.ck.weights_file), device=self.device).items():
            m = re.match(r"transformer\.layers\.(\d+)\.(.*)", key)
            if m and int(m[1]) in layers:
                rest = m[2]
                if rest.startswith("seq_modeling_block.original_layer.") or rest in unused:
                    continue
                if not rest.startswith(("original_layer.", "seq_modeling_block.")):
                    rest = "original_layer." + rest
                key = f"transformer.layers.{m[1]}.{rest}"
            state[key] = value.to(self.dtype) if value.is_floating_point() else value
        res = lm.load_state_dict(state, strict=False)
        name = self.ck.weights_file.name
        if res.unexpected_keys:
            k = res.unexpected_keys
            raise InputError(
                f"{name}: {len(k)} tensors match nothing in the model built from config.json "
                f"(lora={self.lm_kwargs.get('lora', False)}): {', '.join(k[:4])}{' ...' if len(k) > 4 else ''}"
            )
        if self.consolidated and res.missing_keys:
            k = res.missing_keys
            raise InputError(f"{name}: {len(k)} tensors of the model missing: {', '.join(k[:4])}")
        lora = [k for k in res.missing_keys if ".lora_A." in k or ".lora_B." in k]
        if lora:  # config.json says LoRA, but its A/B matrices are not in the file: they would stay random
            raise InputError(
                f"{name}: config.json has lora=true but {len(lora)} LoRA tensors are missing: "
                f"{', '.join(lora[:3])}{' ...' if len(lora) > 3 else ''}"
            )

    # -- streaming ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        import torch

        self._buf = np.zeros(0, dtype=np.float32)
        self._first = True
        self._out_pcm = []
        self._signals = {}
        self._outer = []
        self._codes = None  # teacher-forced: Mimi codes waiting for a whole mini-batch
        if self.model is None:
            return
        torch.manual_seed(self.seed)  # sampling: the same audio gives the same run
        self.mimi.reset_streaming()
        if self.teacher_forced:
            self.model.reset_streaming()
            self.tf.reset()
        else:
            self.lm_gen.reset_streaming()
        for layer in self.layers.values():
            layer.ttt.reset_stream()

    def process(self, samples: np.ndarray) -> int:
        import torch
        from moshi.utils.compile import no_cuda_graph

        if self.model is None:
            self.load()
        buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float32).reshape(-1)])
        n = buf.shape[0] // self.frame_samples
        self._buf = buf[n * self.frame_samples :]
        if not n:
            return 0
        pcm = torch.from_numpy(np.ascontiguousarray(buf[: n * self.frame_samples])).to(self.device)
        if self.teacher_forced:
            return self._process_teacher_forced(pcm)
        steps = 0
        out = []
        # As their loop: Mimi encodes one frame at a time, LMGen steps it, Mimi decodes each step's tokens.
        # No CUDA graphs: a graph replay would skip the Python side of the TTT layers (their inference too).
        with torch.no_grad(), no_cuda_graph():
            for frame_pcm in pcm.view(1, 1, -1).split(self.frame_samples, dim=2):
                codes = self.mimi.encode(frame_pcm)  # [1, K, 1]
                if self._first:  # their inference steps the first frame twice
                    self.lm_gen.step(codes)
                    steps += 1
                    self._first = False
                tokens = self.lm_gen.step(codes)
                steps += 1
                if tokens is not None:
                    out.append(self.mimi.decode(tokens[:, 1:])[0, 0])
            if out:
                self._out_pcm.append(torch.cat(out).float().cpu().numpy())
        return steps

    def _process_teacher_forced(self, pcm) -> int:
        """Mimi encodes the block frame by frame (streaming: blocks join seamlessly; one frame at a time, as their
        inference does, so that the codes do not depend on the block size: encoding 12 frames in one call
        flips a residual code at a near tie now and then); every whole mini-batch of codes is one chunk of
        steps; the rest waits for the next block."""
        import torch

        with torch.no_grad():
            frames = pcm.view(1, 1, -1).split(self.frame_samples, dim=2)
            codes = torch.cat([self.mimi.encode(f)[0] for f in frames], 1)  # [8, frames]
            self._codes = codes if self._codes is None else torch.cat([self._codes, codes], 1)
            C, steps = self.mini_batch_size, 0
            while self._codes.shape[1] >= C:
                self._outer.append(self.tf.chunk(self._codes[:, :C]))
                self._codes = self._codes[:, C:]
                steps += C
        return steps

    def take_outer(self) -> np.ndarray | None:
        """The outer loss of the positions completed since the last call, one host copy."""
        import torch

        if not self._outer:
            return None
        out = torch.cat(self._outer).float().cpu().numpy()
        self._outer = []
        return out

    def take_losses(self) -> dict[int, np.ndarray]:
        from ...recording import host_copy  # torch: imported once the model runs

        out = {}
        if self.model is None:
            return out
        for L, layer in self.layers.items():
            losses, signals = layer.ttt.take()
            if losses is not None:
                out[L], self._signals[L] = host_copy(losses, signals)  # one host copy per block
        return out

    def take_signals(self) -> dict[int, np.ndarray]:
        out, self._signals = self._signals, {}
        return out

    def write_outputs(self, out_dir: Path) -> dict[str, Path]:
        """The generated audio, ``output.wav`` (24 kHz), whatever was generated before a stop."""
        import soundfile as sf

        if not self._out_pcm:
            return {}
        from ...record.files import atomic

        path = Path(out_dir) / "output.wav"
        with atomic(path) as tmp:
            sf.write(str(tmp), np.concatenate(self._out_pcm), self.sample_rate, subtype="FLOAT")
        return {"audio": path}


def apply_run_settings(lm, setup, ttt_layers) -> None:
    """What their inference sets on the built model (``runtime``): the main transformer's RoPE max_period and the
    attention context of the TTT layers and of the others. Before streaming starts: a layer's KV cache is sized
    by its context when its streaming state is made."""
    if setup.max_period is not None:
        lm.transformer.max_period = setup.max_period
        if lm.transformer.rope is not None:
            lm.transformer.rope.max_period = setup.max_period
    for i, layer in enumerate(lm.transformer.layers):
        ctx = setup.ttt_context if i in ttt_layers else setup.other_context
        attn = (layer.original_layer if i in ttt_layers else layer).self_attn
        if ctx is not None:
            attn.context = ctx
