"""A data set's files: from files, folders (recursively, audio files only) and manifests (one path per line),
in one fixed order, and the shard of it that one process runs."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..record.files import atomic

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
INPUTS_NAME = "eval_inputs.json"


def _manifest(path: Path) -> list[Path]:
    """One path per line (relative paths are relative to the manifest's folder); blank lines and # comments
    are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"cannot read the manifest {path} ({e}); give audio files, folders or a text manifest"
        ) from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    if not out:
        raise InputError(f"the manifest {path} lists no file (one path per line)")
    return out


def expand(inputs: list[str]) -> list[Path]:
    """The data set's files, in the order given (folders sorted), each once. A path that does not exist is
    kept: its run fails with the reason, and the others go on."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise InputError(f"{p} holds no audio file ({', '.join(sorted(AUDIO_SUFFIXES))})")
            files += found
        elif p.is_file() and p.suffix.lower() not in AUDIO_SUFFIXES:
            files += _manifest(p)
        else:
            files.append(p)
    seen, out = set(), []
    for f in files:
        key = str(f.resolve()) if f.exists() else str(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        raise InputError("no input: give audio files, folders of audio files or a manifest")
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N``: the I-th of N parts (0 <= I < N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: give I/N, the I-th of N parts (0-based), e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"--shard {text}: I must be within 0..N-1 and N >= 1")
    return i, n


def shard(files: list[Path], index: int, count: int) -> list[tuple[int, Path]]:
    """(position in the data set, path) of the files of part ``index`` of ``count``: every count-th file, so
    that long and short files spread evenly."""
    return [(k, f) for k, f in enumerate(files) if k % count == index]


def run_name(k: int, path: Path) -> str:
    """The run folder of the k-th file: the index keeps two files of the same name apart."""
    return f"{k:05d}-{path.stem or 'input'}"


def record(out_dir: Path, files: list[Path]) -> None:
    """Write the data set's file list into the eval folder (the merge needs it); a folder that holds an
    evaluation of other files is refused."""
    path = out_dir / INPUTS_NAME
    listed = [str(f) for f in files]
    if path.exists():
        try:
            old = json.loads(path.read_text())["files"]
        except (OSError, ValueError, KeyError):
            old = None
        if old == listed:
            return
        raise InputError(
            f"{out_dir} holds an evaluation of other inputs ({INPUTS_NAME} differs); give a new --out "
            "(or the same inputs to resume)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        tmp.write_text(json.dumps({"files": listed}, indent=1) + "\n")


def recorded(out_dir: Path) -> list[Path]:
    path = Path(out_dir) / INPUTS_NAME
    try:
        return [Path(f) for f in json.loads(path.read_text())["files"]]
    except FileNotFoundError:
        raise InputError(f"{out_dir} is not a ttt-tui eval folder: it has no {INPUTS_NAME}") from None
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path} is not readable ({e})") from None
