"""The local spool: where records wait on disk while the server is unreachable or the memory
queue is full, and what survives the process when it exits before the server acked.

Format: a directory of append-only files named ``<20-digit number>.spool``, replayed in number
order. Each holds native frames exactly as they go on the wire (a 4-byte big-endian length and a
Cap'n Proto ``record`` or ``batch`` payload), so replay is sending the bytes as they are. A file
is deleted once every frame in it was acked. A torn frame at the end of a file (a crash while
appending) is ignored at replay. Files roll at ``max_bytes / 8`` so the bound can be kept by
dropping whole files, oldest first, each drop counted and warned about on stderr.

One client per spool directory: two processes appending to the same files would interleave.
"""

import os
import struct
import sys
import threading

from . import wire

_FIRST = 10**12  # numbers start high so that frames can be put in front of the oldest file


class Spool:
    def __init__(self, directory, max_bytes):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, max_bytes // 8)
        self.lock = threading.Lock()
        self.dropped = 0  # records dropped to keep the bound
        self.spooled = 0  # records written here by this process
        os.makedirs(directory, exist_ok=True)
        # [number, size, sent offset, acked offset], oldest first; the last one is appended to.
        self.files = []
        for name in sorted(os.listdir(directory)):
            if name.endswith(".spool") and name[:-6].isdigit():
                size = os.path.getsize(os.path.join(directory, name))
                self.files.append([int(name[:-6]), size, 0, 0])

    def _path(self, number):
        return os.path.join(self.directory, f"{number:020d}.spool")

    def total(self):
        return sum(f[1] for f in self.files)

    def empty(self):
        with self.lock:
            return not self.files

    def append(self, frames, front=False):
        """Writes ``frames`` ((bytes, records) pairs) at the end, or in front of every file
        (frames that were in flight when the process closes). Frames are at most
        ``segment_bytes`` (the client encodes them so); one that is not is dropped, counted."""
        with self.lock:
            if front and frames:
                number = (self.files[0][0] - 1) if self.files else _FIRST
                self._make_room(sum(len(f) for f, _ in frames))
                self.files.insert(0, [number, 0, 0, 0])
            for frame, records in frames:
                if len(frame) > self.max_bytes:
                    self.dropped += records
                    sys.stderr.write(f"logmill: a frame of {len(frame)} bytes is over the spool's "
                                     f"bound of {self.max_bytes}: dropped {records} records\n")
                    continue
                if front:
                    f = self.files[0]
                else:
                    self._make_room(len(frame))
                    if not self.files or self.files[-1][1] + len(frame) > self.segment_bytes:
                        number = (self.files[-1][0] + 1) if self.files else _FIRST
                        self.files.append([number, 0, 0, 0])
                    f = self.files[-1]
                with open(self._path(f[0]), "ab") as out:
                    out.write(frame)
                f[1] += len(frame)
                self.spooled += records

    def _make_room(self, need):
        """Drops the oldest files until ``need`` more bytes fit under the bound (lock held)."""
        while self.files and self.total() + need > self.max_bytes:
            number, size, _, _ = self.files.pop(0)
            path = self._path(number)
            lost = sum(count for _, count, _ in self._frames(path, 0))
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            self.dropped += lost
            sys.stderr.write(
                f"logmill: spool {self.directory} is at its bound of {self.max_bytes} bytes: "
                f"dropped its oldest {lost} records ({self.dropped} dropped in all)\n")

    @staticmethod
    def _frames(path, offset):
        """(frame, records, end offset) of each whole frame in the file from ``offset``."""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return
        at = 0
        while at + 4 <= len(data):
            (n,) = struct.unpack_from(">I", data, at)
            end = at + 4 + n
            if end > len(data):
                return  # torn at the end: never acked, never replayed
            frame = data[at:end]
            try:
                count = wire.frame_records(frame)
            except ValueError:
                return
            yield frame, count, offset + end
            at = end

    def next_frames(self, max_bytes):
        """Frames not yet sent, oldest first, up to about ``max_bytes``: a list of
        (frame, records, (file number, end offset))."""
        out = []
        size = 0
        with self.lock:
            for f in self.files:
                if f[2] >= f[1]:
                    continue
                for frame, count, end in self._frames(self._path(f[0]), f[2]):
                    out.append((frame, count, (f[0], end)))
                    f[2] = end
                    size += len(frame)
                    if size >= max_bytes:
                        return out
                if f[2] < f[1]:  # a torn tail: skip it for good
                    f[2] = f[1]
                return out
        return out

    def unsent(self):
        with self.lock:
            return any(f[2] < f[1] for f in self.files)

    def acked(self, ref):
        """The frame ending at ``ref`` = (file number, offset) was acked: a file acked to its
        end is deleted (unless it is still the one appended to)."""
        number, end = ref
        with self.lock:
            for i, f in enumerate(self.files):
                if f[0] == number:
                    f[3] = max(f[3], end)
                    if f[3] >= f[1] and (i < len(self.files) - 1 or f[2] >= f[1]):
                        self.files.pop(i)
                        try:
                            os.remove(self._path(number))
                        except FileNotFoundError:
                            pass
                    return

