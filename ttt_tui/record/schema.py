"""What the run log says of a run besides its blocks: the header (what ran, on what, what a position is) and
the end record (how it ended, what the source counted). Typed and checked here, once, for every reader: a
value that no reader can trust is one line (``InputError``, exit 2), never a traceback further on.

Both travel as flat JSON objects (the ``meta`` table's ``header`` and ``end``): the header's keys are the
report.json ``run`` block users already read, so a reader's report of a run is the header, updated by the end
record (``runlog.run_info``). ``docs/run-log.md`` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError

# what the audio source counts while it reads, sent with the end record (the header is written before)
SOURCE_COUNTERS = ("nonfinite_samples", "decoder_messages", "dropped_blocks", "mic_peak_level_db")
STATES = ("finished", "stopped", "error", "killed", "running")


@dataclass(frozen=True)
class RunHeader:
    """The run's description, written before its first block. ``fields``: every key as written (the report's
    run block); the typed attributes are the ones a reader needs to rebuild the record."""

    layer_ids: tuple[int, ...]
    frame_rate: float  # positions per second
    position_unit: str = "audio frame"  # what one position is
    signal_names: tuple[str, ...] = ()
    signal_labels: dict = field(default_factory=dict)  # per signal, the words a screen shows
    outer_loss: bool = False
    model: str = "?"
    device: str = "?"
    window_s: float | None = None
    input_duration_s: float | None = None
    notes: tuple[str, ...] = ()
    audit: tuple[dict, ...] = ()
    model_details: dict = field(default_factory=dict)  # the backend's own description (per-layer extras)
    fields: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "the run log") -> RunHeader:
        """Checked: one line naming the bad key otherwise."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: its header is not an object; it cannot be read")

        def bad(key, why):
            return InputError(f"{where}: its header's {key} {why}; it cannot be read")

        try:
            layer_ids = tuple(int(x) for x in d["layer_ids"])
        except KeyError:
            raise bad("layer_ids", "is missing") from None
        except (TypeError, ValueError):
            raise bad("layer_ids", f"{d['layer_ids']!r} is not a list of layer numbers") from None
        if len(set(layer_ids)) != len(layer_ids):
            raise bad("layer_ids", f"{list(layer_ids)} repeats a layer")
        try:
            rate = float(d["frame_rate"])
        except KeyError:
            raise bad("frame_rate", "is missing") from None
        except (TypeError, ValueError):
            rate = float("nan")
        if not (math.isfinite(rate) and rate > 0):
            raise bad("frame_rate", f"{d.get('frame_rate')!r} is not a positive number")
        names = d.get("signal_names") or ()
        if not isinstance(names, list | tuple) or not all(isinstance(x, str) for x in names):
            raise bad("signal_names", f"{names!r} is not a list of names")
        window = d.get("window_s")
        if window is not None:
            try:
                window = float(window)
            except (TypeError, ValueError):
                window = float("nan")
            if not (math.isfinite(window) and window > 0):
                raise bad("window_s", f"{d.get('window_s')!r} is not a positive number")
        duration = d.get("input_duration_s")
        if duration is not None and not isinstance(duration, int | float):
            raise bad("input_duration_s", f"{duration!r} is not a number")
        details = d.get("model_details") or {}
        return cls(
            layer_ids=layer_ids,
            frame_rate=rate,
            position_unit=str(d.get("position_unit") or "audio frame"),
            signal_names=tuple(names),
            signal_labels=dict(d.get("signal_labels") or {}),
            outer_loss=bool(d.get("outer_loss", False)),
            model=str(d.get("model", "?")),
            device=str(d.get("device", "?")),
            window_s=window,
            input_duration_s=None if duration is None else float(duration),
            notes=tuple(str(n) for n in d.get("notes") or ()),
            audit=tuple(a for a in d.get("audit") or () if isinstance(a, dict)),
            model_details=details if isinstance(details, dict) else {},
            fields=dict(d),
        )


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, written once as its last record."""

    state: str  # finished | stopped | error
    audio_s: float
    stop_reason: str | None = None
    error: str | None = None
    wall_s: float | None = None
    compute_s: float | None = None
    realtime_factor: float | None = None
    source: dict = field(default_factory=dict)  # SOURCE_COUNTERS: what the source counted while it read
    log_error: str | None = None  # the log stopped taking blocks (a full disk): they went elsewhere

    @classmethod
    def from_dict(cls, d: dict, where: str = "the run log") -> RunEnd:
        def bad(why):
            return InputError(f"{where}: its end record is damaged ({why}); nothing can trust it")

        if not isinstance(d, dict) or not isinstance(d.get("state"), str):
            raise bad("no state")
        try:
            audio_s = float(d.get("audio_s", 0.0))
        except (TypeError, ValueError):
            raise bad(f"audio_s {d.get('audio_s')!r}") from None
        if not math.isfinite(audio_s) or audio_s < 0:
            raise bad(f"audio_s {d.get('audio_s')!r}")
        nums = {}
        for key in ("wall_s", "compute_s", "realtime_factor"):
            v = d.get(key)
            if v is not None and not isinstance(v, int | float):
                raise bad(f"{key} {v!r}")
            nums[key] = v
        source = d.get("source") or {}
        return cls(
            state=d["state"],
            audio_s=audio_s,
            stop_reason=d.get("stop_reason"),
            error=d.get("error"),
            source={k: source[k] for k in SOURCE_COUNTERS if k in source} if isinstance(source, dict) else {},
            log_error=d.get("log_error"),
            **nums,
        )

    def to_dict(self) -> dict:
        out = {
            "state": self.state,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "audio_s": self.audio_s,
            "wall_s": self.wall_s,
            "compute_s": self.compute_s,
            "realtime_factor": self.realtime_factor,
            "source": dict(self.source),
        }
        if self.log_error:
            out["log_error"] = self.log_error
        return out


def source_counters(source) -> dict:
    """What an audio source counted while it read (NaN samples replaced, decoder messages, dropped blocks,
    the microphone's peak level): known only at the end, so it goes in the end record."""
    described = source.describe() if hasattr(source, "describe") else {}
    out = {k: described[k] for k in SOURCE_COUNTERS if k in described}
    if getattr(source, "dropped_blocks", None) is not None:
        out["dropped_blocks"] = source.dropped_blocks
    return out
