"""A run's settings, typed: what the command line says about the audio, the model and the report, and the only
thing that crosses module and process boundaries (the dashboard's inference process gets them as a dict).
The UI's own options (refresh rate, markers) stay with the UI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class RunSettings:
    # audio in
    input: str | None = None
    mic: bool = False
    device: str | None = None  # the microphone (NAME or INDEX)
    duration: float | None = None  # microphone: stop after this many seconds
    block_seconds: float = 1.0
    realtime: bool = False
    # the report
    out: str | None = None
    force: bool = False
    no_plots: bool = False
    window: float = 30.0
    tensorboard: str | None = None
    # the model
    torch_device: str | None = None
    lr_scale: float = 1.0
    mini_batch: int | None = None
    checkpoint: str | None = None
    hf_repo: str | None = None
    moshi_weight: str | None = None
    mimi_weight: str | None = None
    config: str | None = None
    mimi_config: str | None = None
    ttt_persist: bool = False
    gating_alpha: float | None = None
    follow: str | None = None
    greedy: bool = False
    teacher_forced: bool = False
    seed: int | None = None

    @classmethod
    def from_args(cls, ns) -> RunSettings:
        """From the command line's namespace (``cli.build_parser``); names it lacks keep their defaults."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})

    def to_dict(self) -> dict:
        return asdict(self)
