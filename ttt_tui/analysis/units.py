"""What a position is, in words. An audio run's positions are frames at a rate, said in seconds (``mm:ss``); a
text model's are tokens, said as positions (the run log's header: ``position_unit``, ``frame_rate``). Every
number inside stays "seconds" = positions / rate; a token run's rate is 1, so its "seconds" are positions."""

from __future__ import annotations

TOKEN = "token"


def timed(unit: str | None) -> bool:
    """Whether positions are times (frames of a stream at a rate) rather than tokens."""
    return unit != TOKEN


def clock(seconds: float) -> str:
    """mm:ss (h:mm:ss from an hour)."""
    s = int(round(seconds))
    h, m, sec = s // 3600, (s // 60) % 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def when(x: float, unit: str | None = None) -> str:
    """A moment of the run: ``10:30``, or ``token 12,000``."""
    return clock(x) if timed(unit) else f"token {int(round(x)):,}"


def span(x: float, unit: str | None = None, digits: int | None = 1) -> str:
    """A length of the run: ``24.7 s`` (``digits`` None: as short as it goes, ``30 s``), or ``1,235 tokens``."""
    if not timed(unit):
        return f"{int(round(x)):,} tokens"
    return f"{x:g} s" if digits is None else f"{x:.{digits}f} s"


def whole(unit: str | None = None) -> str:
    """What the run is made of: ``the audio``, or ``the tokens``."""
    return "the audio" if timed(unit) else "the tokens"


def axis(unit: str | None = None) -> str:
    """An x axis along the run."""
    return "seconds of audio" if timed(unit) else "token position"
