"""Recording a meeting: everything a participant receives (every pose frame as relayed, the AI host's voice and
mouth, chat, presence) with its time, in one compact file at pose bitrate.

A recording file (`<id>.avrec`) is one zlib stream of msgpack objects (docs/RECORDING.md):
  a header   {"format": "avatar-recording", "version": 1, "id", "room_id", "started_at", "by", "members"}
  records    [dt_ms, message]   dt_ms since the previous record; message: a server message's bytes as sent
  a trailer  {"ended_at", "duration_ms", "records"}
Pose frames are PoseData as relayed (a key frame, then deltas of the fields that changed), so the file costs
about what the room's pose traffic costs, less what zlib takes out of the msgpack framing. Beside each file a
small `<id>.json` holds what the list shows.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import msgpack

from meeting.errors import MeetingError
from wire import protocol as p

log = logging.getLogger(__name__)
FORMAT, VERSION = "avatar-recording", 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class RecordingError(MeetingError):
    code = "bad_recording"


class RecordingNotFound(MeetingError):
    code = "recording_not_found"


@dataclass
class RecordingInfo:
    id: str
    room_id: str
    started_at: float
    by: str
    ended_at: float | None = None
    duration_s: float = 0.0
    records: int = 0
    bytes: int = 0


class Recorder:
    """Writes one room's recording; `record(message)` from any thread (it only compresses into a buffer)."""

    def __init__(self, directory: pathlib.Path, room_id: str, members: tuple[p.Member, ...], by: str,
                 max_bytes: int, clock=time.monotonic):
        self.id = f"{room_id}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.directory, self.max_bytes, self.clock = directory, max_bytes, clock
        self.info = RecordingInfo(self.id, room_id, time.time(), by)
        self._part = directory / f"{self.id}.avrec.part"
        self._file = open(self._part, "wb")
        self._zip = zlib.compressobj(6)
        self._lock = threading.Lock()
        self._start = clock()
        self._last_ms = 0
        self.full = False                  # over max_bytes: the room stops it
        self._write({"format": FORMAT, "version": VERSION, "id": self.id, "room_id": room_id,
                     "started_at": self.info.started_at, "by": by,
                     "members": [[m.slot, m.user_id, m.name, int(m.host)] for m in members]})

    @property
    def started_ms(self) -> int:
        return int(self.info.started_at * 1000)

    def _write(self, obj) -> None:
        out = self._zip.compress(msgpack.packb(obj, use_bin_type=True))
        if out:
            self._file.write(out)
            self.info.bytes += len(out)

    def record(self, message: bytes) -> None:
        with self._lock:
            if self._file is None or self.full:
                return
            t_ms = int((self.clock() - self._start) * 1000)
            self._write([t_ms - self._last_ms, message])
            self._last_ms = t_ms
            self.info.records += 1
            if self.info.bytes > self.max_bytes:
                self.full = True

    def close(self) -> RecordingInfo:
        """Finish the file (trailer, flush, fsync) and put it in place with its summary."""
        with self._lock:
            if self._file is None:
                return self.info
            self.info.ended_at = time.time()
            self.info.duration_s = round(self.clock() - self._start, 3)
            self._write({"ended_at": self.info.ended_at, "duration_ms": int(self.info.duration_s * 1000),
                         "records": self.info.records})
            tail = self._zip.flush()
            self._file.write(tail)
            self.info.bytes += len(tail)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._part.rename(self.directory / f"{self.id}.avrec")
            (self.directory / f"{self.id}.json").write_text(json.dumps(asdict(self.info)))
        log.info("recording %s: %d records, %.1f s, %d bytes", self.id, self.info.records, self.info.duration_s,
                 self.info.bytes)
        return self.info


class RecordingStore:
    """The recordings in a directory: listed, opened, deleted."""

    def __init__(self, directory: str, max_bytes: int):
        self.directory = pathlib.Path(directory).expanduser()
        self.max_bytes = max_bytes

    def ensure(self) -> pathlib.Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def start(self, room_id: str, members: tuple[p.Member, ...], by: str) -> Recorder:
        return Recorder(self.ensure(), room_id, members, by, self.max_bytes)

    def all(self) -> list[RecordingInfo]:
        if not self.directory.is_dir():
            return []
        out = []
        for path in self.directory.glob("*.json"):
            try:
                out.append(RecordingInfo(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                log.warning("recording summary %s unreadable: skipped", path.name)
        return sorted(out, key=lambda r: r.started_at, reverse=True)

    def get(self, recording_id: str) -> RecordingInfo:
        path = self._path(recording_id, "json")
        try:
            return RecordingInfo(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise RecordingNotFound(f"no recording {recording_id!r}") from None

    def file(self, recording_id: str) -> pathlib.Path:
        self.get(recording_id)
        return self._path(recording_id, "avrec")

    def delete(self, recording_id: str) -> None:
        self.get(recording_id)
        for ext in ("avrec", "mp4", "json"):
            self._path(recording_id, ext).unlink(missing_ok=True)

    def _path(self, recording_id: str, ext: str) -> pathlib.Path:
        if not ID_PATTERN.match(recording_id) or recording_id.startswith("."):
            raise RecordingNotFound(f"no recording {recording_id!r}")
        return self.directory / f"{recording_id}.{ext}"


def read(path: pathlib.Path) -> tuple[dict, Iterator[tuple[int, bytes]]]:
    """A recording's header and its records as (t_ms from the start, message); raises RecordingError."""
    unzip, unpacker = zlib.decompressobj(), msgpack.Unpacker(raw=False, max_buffer_size=16 << 20)
    stream = open(path, "rb")

    def objects():
        with stream:
            while chunk := stream.read(65536):
                try:
                    unpacker.feed(unzip.decompress(chunk))
                except zlib.error as exc:
                    raise RecordingError(f"not a recording (zlib: {exc})") from None
                yield from unpacker

    items = objects()
    header = next(items, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        stream.close()
        raise RecordingError("not a recording of this server (format, version)")

    def records():
        t_ms = 0
        for item in items:
            if isinstance(item, dict):                  # the trailer
                return
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], bytes):
                raise RecordingError("a damaged record")
            t_ms += item[0]
            yield t_ms, item[1]

    return header, records()
