"""The run log: every block of losses and signals, appended to ``run.sqlite`` in the report folder as the run
goes, so that a killed run (SIGKILL, the OOM killer, a lost node) keeps everything up to its last block and
another process can read it while it is written.

Why SQLite (the standard library's ``sqlite3``): one file, transactions (a block is in the log whole or not at
all: a torn write is rolled back on the next open), WAL mode (readers read while the writer appends, neither
waits), and every machine has it. Blocks are float32 arrays stored as BLOBs: the three losses take 12 bytes per
token per layer, plus about 60 bytes per block and layer.

Tables: ``meta`` (``format``, ``header``: the run's description as JSON, ``end``: how it ended), ``blocks``
(layer, kind 'losses' or 'signals', first position, rows, columns, data, and a CRC-32 of all of them; the
model's outer loss, where a run records it, is kind 'outer' of layer -1, one column), ``status`` (the last
state, audio seconds, wall seconds, and when the writer last said so; one row, replaced). The format is
described for other writers and readers in ``docs/run-log.md``.

A block whose checksum or shape is wrong (flipped bits, a torn copy) is skipped and named (layer, positions,
why); its positions become missing rows (``LossStore.append_missing``), so the blocks after it keep their
places and are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import pid_runs
from .schema import RunEnd, RunHeader
from .store import LossStore

LOG_NAME = "run.sqlite"
FORMAT = 2  # 2: a CRC-32 per block (format 1 logs are read without it)
OUTER_LAYER = -1  # the outer loss is the whole model's, not a layer's
GAP_IDS = 1000  # reading a damaged log id by id: this many absent ids in a row end it
HEARTBEAT_S = 2.0  # the writer refreshes its status row this often, whatever the run does
LOST_AFTER_S = 30.0  # a writer elsewhere whose heartbeat is older than this is lost

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, layer INTEGER NOT NULL, kind TEXT NOT NULL, start INTEGER NOT NULL,
    rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS status (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL,
    audio_s REAL NOT NULL, wall_s REAL NOT NULL, updated REAL NOT NULL);
"""


class RunLogWriter:
    """The engine's second sink (beside the store): ``extend`` / ``extend_signals`` append a block each and
    commit, ``status`` records progress, ``close(end)`` the end. Used from one thread at a time."""

    def __init__(self, out_dir: Path, header: dict, heartbeat_s: float = HEARTBEAT_S):
        """One line (``InputError``) when the log cannot be made: a full disk, a read-only folder; before the
        run, whichever process writes it (the headless engine, the dashboard's child). From then on a thread
        refreshes the status row's ``updated`` time every ``heartbeat_s`` (paused or between blocks too):
        readers on other hosts tell a live writer from a lost one by it (``writer_alive``)."""
        self.path = Path(out_dir) / LOG_NAME
        self._next = {}  # (layer, kind) -> next position
        self._t0 = time.time()
        self._lock = threading.Lock()  # the engine's thread and the heartbeat share the connection
        self._state = ("starting", 0.0)
        header = {**header, **writer_identity(), "log_format": FORMAT}
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a killed process loses nothing committed
            self._db.executescript(SCHEMA)
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('header', ?)", (json.dumps(header, default=str),))
                self._db.execute("DELETE FROM meta WHERE key = 'end'")
        except sqlite3.Error as e:
            self._discard()  # a log that could not even be started holds nothing: no broken file left
            raise InputError(
                f"cannot write the run log {self.path} ({e}); free some space or choose another --out"
            ) from None
        self._beating = threading.Event()
        self._write_status()
        threading.Thread(target=self._heartbeat, args=(heartbeat_s,), name="ttt-tui-heartbeat", daemon=True).start()

    def _discard(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _write_status(self) -> None:
        state, audio_s = self._state
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO status VALUES (1, ?, ?, ?, ?)",
                (state, float(audio_s), time.time() - self._t0, time.time()),
            )

    def _heartbeat(self, every: float) -> None:
        while not self._beating.wait(every):
            try:
                self._write_status()
            except Exception:  # a full disk, a closed log: the blocks' own writes say it
                return

    def _append(self, kind: str, blocks: dict) -> None:
        rows = []
        for layer, block in blocks.items():
            a = np.ascontiguousarray(block, dtype="<f4")
            if a.ndim != 2 or not a.shape[0]:
                continue
            start = self._next.get((layer, kind), 0)
            self._next[(layer, kind)] = start + a.shape[0]
            data = a.tobytes()
            rows.append(
                (int(layer), kind, start, a.shape[0], a.shape[1], data, block_crc(layer, kind, start, *a.shape, data))
            )
        if rows:
            with self._lock, self._db:  # one transaction: the block is in the log whole or not at all
                self._db.executemany(
                    "INSERT INTO blocks (layer, kind, start, rows, cols, data, crc) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )

    def extend(self, blocks: dict) -> None:
        self._append("losses", blocks)

    def extend_signals(self, blocks: dict) -> None:
        self._append("signals", blocks)

    def extend_outer(self, block) -> None:
        self._append("outer", {OUTER_LAYER: np.asarray(block, dtype=np.float32).reshape(-1, 1)})

    def status(self, state: str, audio_s: float) -> None:
        self._state = (state, audio_s)
        self._write_status()

    def close(self, end: RunEnd | dict) -> None:
        """The end record, then the log made one self-contained file (``self_contained``)."""
        self._beating.set()
        end = end.to_dict() if isinstance(end, RunEnd) else end
        with self._lock:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('end', ?)", (json.dumps(end, default=str),))
            self_contained(self._db)
            self._db.close()


def block_crc(layer: int, kind: str, start: int, rows: int, cols: int, data: bytes) -> int:
    """CRC-32 of a block: its place (layer, kind, first position, shape) and its bytes, so that a flipped bit in
    either is found."""
    place = struct.pack("<qqqq", int(layer), int(start), int(rows), int(cols)) + kind.encode()
    return zlib.crc32(data, zlib.crc32(place))


def self_contained(db: sqlite3.Connection) -> bool:
    """A finished log as one file: the write-ahead log folded in and the journal mode back to the classic
    rollback journal, so that no ``-wal``/``-shm`` is needed to read it: readable on read-only media and when
    ``run.sqlite`` is copied alone. Needs the only connection (a reader still open, such as the dashboard's,
    keeps WAL: ``settle`` does it once that reader has closed); False when it could not."""
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()
        return bool(mode) and str(mode[0]).lower() == "delete"
    except sqlite3.Error:
        return False


@dataclass
class LoggedRun:
    """What a run log holds, read back."""

    folder: Path
    header: RunHeader
    store: LossStore
    end: RunEnd | None  # None: the run did not end (killed, or still running)
    status: dict = field(default_factory=dict)
    damaged: list = field(default_factory=list)  # blocks that could not be used (``RunLogReader.damaged``)

    @property
    def cut_short(self) -> bool:
        return self.end is None


class RunLogReader:
    """Reads a run log incrementally: ``poll`` appends the blocks written since the last call to a store, so the
    same code reads a finished run, a killed one, or one still being written (follow it by polling)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.folder, self.path = folder, folder / LOG_NAME
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (give a report folder written by ttt-tui)")
        if not self.path.is_file():
            raise InputError(f"{folder} is not a ttt-tui run: it has no {LOG_NAME}")
        self._torn: tuple[int, int] | None = None  # (bytes there, bytes its header says): a cut copy, read in memory
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            meta = self._meta()
        except sqlite3.DatabaseError as e:
            meta = self._read_torn() if "malformed" in str(e) else None
            if meta is None:
                hint = "; a torn or incomplete copy? copy it again" if "malformed" in str(e) else ""
                raise InputError(f"{self.path} is not a readable run log ({e}{hint})") from None
        try:
            fmt = int(meta.get("format", "0"))
            if fmt > FORMAT:
                raise InputError(
                    f"{self.path} was written by a newer ttt-tui (log format {fmt}, this one reads {FORMAT})"
                )
            self.header = RunHeader.from_dict(json.loads(meta["header"]), str(self.path))
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(f"{self.path} is not a readable run log ({type(e).__name__}: {e})") from None
        self.layer_ids = list(self.header.layer_ids)
        self.signal_names = self.header.signal_names
        self.frame_rate = self.header.frame_rate
        self.outer = self.header.outer_loss
        self.damaged: list[dict] = []  # blocks that could not be used: layer, kind, start, end, why
        if self._torn is not None:
            have, want = self._torn
            self._damage(
                None, None, None, None, f"the file is cut short ({have:,} of {want:,} bytes): read what it holds"
            )
        self._last_id = 0
        self._expect: dict = {}
        self._pending: dict = {}  # (layer, kind) -> rows read in this poll, not yet in the store
        try:
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(blocks)").fetchall()}
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path} is not a readable run log ({e})") from None
        crc = "crc" if "crc" in columns else "NULL"  # format 1: no checksums
        self._select = f"SELECT id, layer, kind, start, rows, cols, data, {crc} FROM blocks"

    def _meta(self) -> dict:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def new_store(self) -> LossStore:
        return LossStore(
            self.layer_ids,
            self.frame_rate,
            signal_names=self.signal_names,
            outer=self.outer,
            position_unit=self.header.position_unit,
        )

    def poll(self, store: LossStore) -> int:
        """Append the blocks written since the last poll; returns how many were read. A block that SQLite itself
        cannot read (a damaged page) is read around: block by block, each unreadable one named."""
        try:
            rows = self._db.execute(f"{self._select} WHERE id > ? ORDER BY id", (self._last_id,)).fetchall()
        except sqlite3.DatabaseError:
            rows = self._rows_one_by_one()
        for row in rows:
            self._take(store, *row)
        self._flush(store)
        return len(rows)

    def _flush(self, store: LossStore, key=None) -> None:
        """Into the store, the rows read and not yet added (of ``key``, or of all): consecutive blocks of a layer
        go in as one (the statistics' update per call, not per row, was most of the time to open a 2.5 h run)."""
        for k in [key] if key is not None else list(self._pending):
            parts = self._pending.pop(k, None)
            if not parts:
                continue
            layer, kind = k
            a = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if kind == "losses":
                store.append(layer, a)
            elif kind == "outer":
                store.extend_outer(a[:, 0])
            else:
                store.extend_signals({layer: a})

    def _rows_one_by_one(self) -> list:
        """Block by block, by id: a damaged page loses the blocks on it, not the rest. Without a readable last id
        (the damage is on the table's right edge), ids are tried until ``GAP_IDS`` in a row are absent."""
        try:
            (last,) = self._db.execute("SELECT max(id) FROM blocks").fetchone()
        except sqlite3.DatabaseError:
            last = None
        rows, missing, bid, unreadable = [], 0, self._last_id, []
        while (bid < last) if last is not None else (missing < GAP_IDS):
            bid += 1
            try:
                row = self._db.execute(f"{self._select} WHERE id = ?", (bid,)).fetchone()
            except sqlite3.DatabaseError as e:
                unreadable.append((bid, e))
                missing += 1
                continue
            if row is None:
                missing += 1
                continue
            for b, e in unreadable:  # unreadable blocks before a readable one: damage in the middle, named
                self._damage(None, None, None, None, f"block {b} unreadable ({e})")
            unreadable, missing = [], 0
            rows.append(row)
        if unreadable and last is not None:
            for b, e in unreadable:
                self._damage(None, None, None, None, f"block {b} unreadable ({e})")
        elif unreadable:  # the table's end is gone: say it once
            self._damage(None, None, None, None, f"the blocks after block {unreadable[0][0] - 1} are unreadable")
        self._last_id = max(self._last_id, bid if last is not None else (rows[-1][0] if rows else self._last_id))
        return rows

    def _read_torn(self) -> dict | None:
        """A copy cut short (an interrupted transfer) that SQLite refuses to open: its pages, padded with zeros to
        the length its header gives, read from memory; the pages that are there are read, the blocks on missing
        pages are named as unreadable. None when that fails too."""
        try:
            raw = self.path.read_bytes()
            page = int.from_bytes(raw[16:18], "big")
            page = 65536 if page == 1 else page
            want = int.from_bytes(raw[28:32], "big") * page
            if not raw.startswith(b"SQLite format 3\0") or not (len(raw) < want <= 64 * len(raw) + (1 << 20)):
                return None
            db = sqlite3.connect(":memory:", check_same_thread=False)
            db.deserialize(raw + bytes(want - len(raw)))
            self._db.close()
            self._db = db
            meta = self._meta()
        except (OSError, AttributeError, sqlite3.DatabaseError, ValueError):  # AttributeError: Python < 3.11
            return None
        self._torn = (len(raw), want)
        return meta

    def _damage(self, layer, kind, start, n, why: str) -> None:
        self.damaged.append(
            {"layer": layer, "kind": kind, "start": start, "end": None if n is None else start + n, "why": why}
        )

    def _take(self, store: LossStore, bid, layer, kind, start, n, cols, data, crc) -> None:
        """One block into the store, or named as damaged (``damaged``): its positions become missing rows when
        they are known (the next valid block's first position tells them otherwise), so that the later blocks
        keep their places."""
        self._last_id = bid
        key = (layer, kind)
        want_cols = {"losses": 3, "outer": 1, "signals": len(self.signal_names)}.get(kind)
        known = (layer == OUTER_LAYER) if kind == "outer" else (layer in self.layer_ids and want_cols is not None)
        shaped = (
            isinstance(data, bytes)
            and isinstance(start, int)
            and isinstance(n, int)
            and start >= 0
            and n > 0
            and cols == want_cols
            and len(data) == n * cols * 4
        )
        sound = crc is None or (shaped and isinstance(crc, int) and crc == block_crc(layer, kind, start, n, cols, data))
        expect = self._expect.get(key, 0)
        if not (known and shaped and sound):
            why = "checksum mismatch" if known and shaped else "malformed"
            if known and shaped and start == expect:  # only its bytes are bad: its positions are known
                self._damage(layer, kind, start, n, why)
                self._missing(store, layer, kind, n)
            else:
                self._damage(layer if known else None, kind if known else None, None, None, f"block {bid}: {why}")
            return
        if start < expect:
            self._damage(layer, kind, start, n, f"block {bid} repeats positions already read")
            return
        if start > expect:  # a block before it was lost: its positions are missing
            if not any(d["layer"] == layer and d["kind"] == kind and d["start"] == expect for d in self.damaged):
                self._damage(layer, kind, expect, start - expect, "no block holds them")
            self._missing(store, layer, kind, start - expect)
        self._expect[key] = start + n
        self._pending.setdefault(key, []).append(np.frombuffer(data, dtype="<f4").reshape(n, cols))

    def _missing(self, store: LossStore, layer, kind, n: int) -> None:
        self._flush(store, (layer, kind))  # the rows before the lost ones first
        store.append_missing(layer, n, kind)
        self._expect[(layer, kind)] = self._expect.get((layer, kind), 0) + n

    @contextlib.contextmanager
    def snapshot(self):
        """One read transaction: what is read inside (blocks, end record, status) is one state of the log, so
        a report marked finished holds every block (the blocks read, then the end record in a second query,
        once missed the blocks written in between)."""
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            try:
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError:  # a damaged file: nothing was written, nothing to keep
                pass

    def end(self) -> RunEnd | None:
        meta = self._meta()
        if "end" not in meta:
            return None
        try:
            end = json.loads(meta["end"])
        except ValueError as e:
            raise InputError(f"{self.path}: its end record is damaged ({e}); nothing can trust it") from None
        return RunEnd.from_dict(end, str(self.path))

    def status(self) -> dict:
        try:
            row = self._db.execute("SELECT state, audio_s, wall_s, updated FROM status WHERE id = 1").fetchone()
        except sqlite3.DatabaseError:  # a torn copy: its status page may be gone
            return {}
        return dict(zip(("state", "audio_s", "wall_s", "updated"), row, strict=True)) if row else {}

    def close(self) -> None:
        self._db.close()


def settle(folder: str | Path) -> None:
    """Fold the log's write-ahead file into ``run.sqlite`` and remove ``-wal``/``-shm``: SQLite does it when the
    last connection closes, but a writer that finishes while a read-only reader still holds the log (the
    dashboard) leaves them behind. Call when neither writes nor reads any more; harmless otherwise."""
    path = Path(folder) / LOG_NAME
    if not path.is_file():
        return
    try:
        db = sqlite3.connect(path)
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":  # a finished log: one file
                self_contained(db)
        finally:
            db.close()
    except sqlite3.Error:
        pass


def read_run(folder: str | Path) -> LoggedRun:
    """Every complete block of a run log, into a store; one line (exit 2) for a folder that is not a run, or a
    log this version cannot read."""
    reader = RunLogReader(folder)
    try:
        store = reader.new_store()
        with reader.snapshot():  # blocks, end and status of one moment of the log
            reader.poll(store)
            return LoggedRun(reader.folder, reader.header, store, reader.end(), reader.status(), reader.damaged)
    except (sqlite3.Error, ValueError) as e:
        raise InputError(f"{reader.path} is not a readable run log ({type(e).__name__}: {e})") from None
    finally:
        reader.close()


def run_info(run: LoggedRun) -> dict:
    """The report's run section from a log: the header, updated with how the run ended, or, for a run that did
    not end, where its log stops (killed) or that its writer still runs."""
    info = dict(run.header.fields)
    end = run.end
    if end is not None:
        info.update(
            state=end.state,
            interrupted=end.state != "finished",
            stop_reason=end.stop_reason,
            error=end.error,
            duration_s=round(end.audio_s, 4),
            **end.source,  # what the source counted (NaN samples replaced, dropped blocks), known at the end
        )
        if end.log_error:
            info["log_error"] = end.log_error
        for key in ("wall_s", "realtime_factor"):  # how long it took, as its writer measured (not the header's 0)
            if getattr(end, key) is not None:
                info[key] = getattr(end, key)
    else:
        audio_s = float(run.status.get("audio_s", 0.0))
        positions = max((run.store.n_positions(i) for i in run.store.layer_ids), default=0)
        alive = writer_alive(run.header, run.status)
        info.update(
            state="running" if alive else "killed",
            interrupted=True,
            cut_short={"audio_s": round(audio_s, 4), "positions": positions, "writer_alive": alive},
            stop_reason="still running: a snapshot of its log"
            if alive
            else f"cut short: the process ended without closing its log (killed?) after {audio_s:.1f} s of audio",
            duration_s=round(audio_s, 4),
        )
        if run.status.get("wall_s") is not None:
            info["wall_s"] = round(float(run.status["wall_s"]), 3)
    if run.damaged:
        info["log_damage"] = [{**d, "text": damage_text(d, run.store.frame_rate)} for d in run.damaged]
    return info


def damage_text(d: dict, frame_rate: float) -> str:
    """One damaged block in words: where (layer, positions, seconds) and why."""
    what = "the outer loss" if d.get("kind") == "outer" else f"layer {d['layer']}" if d.get("layer") is not None else ""
    if d.get("kind") == "signals":
        what += " signals"
    if d.get("start") is None:
        skipped = "" if d["why"].startswith("the ") else "; skipped"  # "the file is cut short ...": no block
        return f"{what + ': ' if what else ''}{d['why']}{skipped}"
    a, b = d["start"], d["end"]
    return (
        f"{what}: positions {a}-{b - 1} ({a / frame_rate:.2f}-{b / frame_rate:.2f} s) lost: {d['why']}; "
        "skipped, later blocks kept"
    )


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_ns() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22): a pid reused by another
    process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def writer_identity() -> dict:
    """Who writes a log, in its header: host, boot, PID namespace, pid and the pid's start time."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid_ns": _pid_ns(),
        "pid_start": _start_ticks(os.getpid()),
    }


def writer_alive(header: RunHeader | dict, status: dict | None = None, now: float | None = None) -> bool:
    """Whether the process that writes a log (that has no end record) still runs.

    - The same machine, boot and PID namespace (the header says where it was written): its pid runs, and
      started when the writer did (a pid reused by another process is not the writer).
    - Elsewhere (another host: a GPU node seen from a login node; another PID namespace: a container): its
      heartbeat, the status row's ``updated`` time, refreshed every ``HEARTBEAT_S`` while it runs: alive while
      it is at most ``LOST_AFTER_S`` old (the two clocks must agree within a few seconds, as NTP keeps them).
    - Logs of an earlier version (no host in the header): its pid, as before."""
    if isinstance(header, RunHeader):
        header = header.fields
    pid = header.get("pid")
    if "host" not in header:
        return bool(pid) and pid_runs(int(pid))
    here = (
        header.get("host") == socket.gethostname()
        and header.get("boot_id") == _boot_id()
        and header.get("pid_ns") == _pid_ns()
    )
    if here and pid:
        return pid_runs(int(pid)) and _start_ticks(int(pid)) == header.get("pid_start")
    updated = (status or {}).get("updated")
    if updated is None:
        return False
    return (time.time() if now is None else now) - float(updated) <= LOST_AFTER_S
