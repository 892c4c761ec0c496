"""The client: a caller-side queue, one background sender thread, acks, reconnect and the spool.

What the caller's thread does per record (``Client.send``, ``LogmillHandler.emit``): build a
tuple and append it to a ``collections.deque`` (atomic under the GIL, no lock). Everything else
happens on the thread named ``logmill-sender``: encoding records into batch frames, the socket,
acks, backoff, the spool. The caller blocks only when the queue is full and the policy says so.

Order of records on the wire, which every path below keeps: frames sent and not yet acked
(``_unacked``, resent first after a reconnect), then the spool's unsent frames, then the queue.
"""

import atexit
import collections
import json as _json
import os
import random
import socket
import sys
import threading
import time
import weakref

from . import wire
from .spool import Spool

__all__ = ["Client", "LogmillError", "Refused"]


class LogmillError(Exception):
    """The client cannot do what was asked (for instance: closed)."""


class Refused(LogmillError):
    """The server refused this client for good (its ``error`` frame, e.g. ``unauthorized`` for a
    token it does not accept). The client stops: reconnecting would be refused again."""

    def __init__(self, code, message):
        super().__init__(f"logmill refused the connection ({code}): {message}")
        self.code = code
        self.message = message


_Entry = collections.namedtuple("_Entry", "frame records spool_ref")


def _address(address):
    if isinstance(address, tuple):
        return address
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1", int(port))


class Client:
    """Sends records to a logmill server over the native protocol, at least once.

    ``Client("127.0.0.1:4020", app="billing", token=TOKEN, spool_dir="/var/spool/billing")``
    connects in the background; ``send`` never waits on the network. See the README for every
    option and why its default is what it is.
    """

    def __init__(self, address="127.0.0.1:4020", *, app="", instance="", token="",
                 spool_dir=None, spool_max_bytes=64 << 20, queue_max=100_000,
                 when_full="drop", block_timeout=1.0, batch_records=1000,
                 batch_bytes=256 << 10, max_unacked_bytes=4 << 20, backoff_initial=0.05,
                 backoff_max=5.0, connect_timeout=5.0, close_timeout=10.0):
        if when_full not in ("drop", "block"):
            raise ValueError("when_full is 'drop' or 'block'")
        self.address = _address(address)
        self._hello = wire.encode_hello(app, instance, token, True)
        self._queue = collections.deque()
        self._queue_max = queue_max
        self._when_full = when_full
        self._block_timeout = block_timeout
        self._batch_records = batch_records
        self._batch_bytes = batch_bytes
        self._max_unacked = max_unacked_bytes
        self._backoff = (backoff_initial, backoff_max)
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._spool = Spool(spool_dir, spool_max_bytes) if spool_dir else None
        # Held while choosing between the spool and the queue, and while moving the queue into
        # the spool: the two must not interleave or records would change order.
        self._order = threading.Lock()
        self._wake = threading.Event()
        # Set by the sender each time it takes from the queue: a caller blocked on a full
        # queue (when_full="block") waits on it instead of polling.
        self._room = threading.Event()
        self._idle = threading.Condition()
        self._unacked = collections.deque()
        self._unacked_bytes = 0
        self._in_hand = 0  # records taken from the queue, not yet in `_unacked` nor the spool
        self._sock = None
        self._fatal = None
        self._closing = False
        self._stopped = False
        self.welcome = None
        self.counters = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="logmill-sender", daemon=True)
        self._thread.start()
        # A normal exit flushes: the hook holds a weak reference, so it never keeps us alive.
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().close())

    # ---- the caller's side ----------------------------------------------------------------

    def send(self, message, level="info", *, logger="", fields=None, timestamp_ns=None,
             host="", service="", module="", file="", line=0, function="", stack_trace=""):
        """Queues one record. ``message`` is a string, or a dict/list sent as a JSON body;
        ``fields`` a dict whose non-string values are sent as JSON text.

        Raises :class:`Refused` once the server has refused this client, and
        :class:`LogmillError` after ``close``.
        """
        if isinstance(message, str):
            is_json = False
        elif isinstance(message, (dict, list)):
            message, is_json = _json.dumps(message, default=str), True
        else:
            message, is_json = str(message), False
        self._put((time.time_ns() if timestamp_ns is None else timestamp_ns,
                   wire.LEVELS[level] if isinstance(level, str) else wire.python_level(level),
                   is_json, message, logger, host, service, module, file, line, function,
                   0, "", 0, "", stack_trace, _fields(fields) if fields else None))

    def _put(self, item):
        if self._fatal is not None:
            raise self._fatal
        if self._stopped:
            raise LogmillError("the client is closed")
        queue = self._queue
        if len(queue) >= self._queue_max:
            self._full(item)
            return
        queue.append(item)
        if len(queue) == 1:
            self._wake.set()  # the sender may be asleep on an empty queue

    def _full(self, item):
        if self._spool is not None:
            # Everything queued, then this record, goes to the end of the spool: it all comes
            # after what is in flight and in the spool already, so the order holds.
            with self._order:
                items = _drain(self._queue)
                items.append(item)
                self._spill(items)
            self._wake.set()
            return
        if self._when_full == "block":
            deadline = time.monotonic() + self._block_timeout
            while True:
                self._room.clear()  # before the check: a take after it sets it again
                left = deadline - time.monotonic()
                if len(self._queue) < self._queue_max or left <= 0:
                    break
                self._wake.set()
                self._room.wait(left)
            if len(self._queue) < self._queue_max:
                self._queue.append(item)
                return
        self.counters["dropped"] += 1
        if self.counters["dropped"] == 1:
            sys.stderr.write("logmill: the queue is full and there is no spool: dropping records"
                             " (client.counters['dropped'] counts them)\n")

    def flush(self, timeout=None):
        """Waits until every record queued so far is acked by the server. True when it is,
        False if ``timeout`` (seconds) ran out first. Raises :class:`Refused` if the server
        refused the client."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._settled():
                    return True
                if self._stopped:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.05 if left is None else min(left, 0.05))

    def _settled(self):
        return (not self._queue and not self._unacked and not self._in_hand
                and (self._spool is None or self._spool.empty()))

    def close(self, timeout=None):
        """Flushes (up to ``timeout``, default ``close_timeout``), stops the sender thread, and
        keeps whatever is not acked in the spool if there is one. True when all was acked."""
        if self._stopped:
            return self._settled()
        timeout = self._close_timeout if timeout is None else timeout
        try:
            ok = self.flush(timeout)
        except LogmillError:
            ok = False
        self._closing = True
        self._stopped = True
        self._wake.set()
        self._thread.join()
        if not ok:
            self._keep_leftovers()
        return ok

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _keep_leftovers(self):
        unacked = [entry for _, entry in self._unacked]
        lost = len(self._queue) + sum(e.records for e in unacked if e.spool_ref is None)
        if self._spool is None or isinstance(self._fatal, Refused):
            if lost:
                why = self._fatal or "the server did not ack them in time and there is no spool"
                sys.stderr.write(f"logmill: closing with {lost} records not acked: {why}\n")
                self.counters["lost"] += lost
            return
        # In flight from memory: in front of the spool, as they were sent before what it holds.
        front = [e for e in unacked if e.spool_ref is None]
        self._spool.append([(e.frame, e.records) for e in front], front=True)
        self._spill(_drain(self._queue))

    # ---- the sender thread --------------------------------------------------------------------

    def _run(self):
        try:
            self._loop()
        except Exception as e:  # a bug here must not leave callers waiting on a dead thread
            self._fatal = LogmillError(f"the sender thread failed: {e!r}")
            sys.stderr.write(f"logmill: {self._fatal}\n")
            self._disconnect()
            self._notify()

    def _loop(self):
        self._delay = self._backoff[0]
        while not self._stopped:
            if self._sock is None:
                try:
                    self._connect()
                except Refused as refused:
                    self._fatal = refused
                    sys.stderr.write(f"logmill: {refused}; the client stops sending\n")
                    self._notify()
                    return
                except (OSError, wire.ProtocolError):
                    self._disconnect()
                    if self._spool is not None:
                        with self._order:
                            self._spill(_drain(self._queue))
                    # Exponential backoff with jitter (half to all of the delay), capped.
                    self._pause()
                    continue
            try:
                self._pump()
            except Refused as refused:
                self._fatal = refused
                sys.stderr.write(f"logmill: {refused}; the client stops sending\n")
                self._disconnect()
                self._notify()
                return
            except (OSError, wire.ProtocolError):
                self._disconnect()
                # A connection that ended before any ack waits too, so that a server which
                # accepts and closes at once is not hammered.
                if self._delay > self._backoff[0]:
                    self._pause()
        self._disconnect()

    def _pause(self):
        """Exponential backoff with jitter (half to all of the delay), capped; the delay goes
        back to its start at the first ack of a connection."""
        self._wake.wait(self._delay * (0.5 + random.random() / 2))
        self._wake.clear()
        self._delay = min(self._delay * 2, self._backoff[1])

    def _connect(self):
        sock = socket.create_connection(self.address, timeout=self._connect_timeout)
        self._sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._inbox = bytearray()
        self._conn_sent = 0
        sock.sendall(self._hello)
        reply = self._read_reply(self._connect_timeout)
        if not isinstance(reply, wire.Welcome):
            raise wire.ProtocolError(f"expected a welcome, got {reply!r}")
        self.welcome = reply
        self._batch_bytes = min(self._batch_bytes, max(1024, reply.max_frame // 2))
        if self.counters["connects"]:
            self.counters["reconnects"] += 1
        self.counters["connects"] += 1
        # What was sent and not acked goes again, first, in order (the duplicate window).
        resend = [entry for _, entry in self._unacked]
        self._unacked.clear()
        self._unacked_bytes = 0
        self.counters["resent"] += sum(entry.records for entry in resend)
        self._send(resend)

    def _disconnect(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _send(self, entries):
        """Sends frames; each is in ``_unacked`` (with the ack count that covers it) before its
        first byte goes out, so a failed write leaves it there to be sent again."""
        for entry in entries:
            self._conn_sent += entry.records
            self._unacked.append((self._conn_sent, entry))
            self._unacked_bytes += len(entry.frame)
        for entry in entries:
            self._sock.sendall(entry.frame)

    def _pump(self):
        """One round: read acks, send what the window allows, or wait for acks or records."""
        self._read_acks(0)
        if self._unacked_bytes < self._max_unacked:
            with self._order:
                if self._spool is not None and self._spool.unsent():
                    entries = [_Entry(f, n, ref) for f, n, ref
                               in self._spool.next_frames(self._batch_bytes)]
                    items = None
                else:
                    entries = None
                    # Set before the queue shrinks, so that flush never sees neither.
                    self._in_hand = 1
                    items = _take(self._queue, self._batch_records)
                    self._room.set()
                    self._in_hand = len(items)
            if items:
                entries = [_Entry(f, n, None) for f, n in self._encode(items)]
            if entries:
                self._send(entries)
                self._in_hand = 0
                return
            self._in_hand = 0
        if self._unacked:
            self._read_acks(0.05)
        else:
            self._notify()
            self._wake.wait(0.05)
            self._wake.clear()

    def _encode(self, items, max_bytes=None):
        """Batch frames for ``items`` (queue tuples or handler entries), each under
        ``batch_bytes``; a record alone over the server's frame limit is dropped and counted."""
        records = [item if len(item) == 17 else _from_logging(item) for item in items]
        max_bytes = min(self._batch_bytes, max_bytes or self._batch_bytes)
        out = []
        pending = [records]
        while pending:
            chunk = pending.pop()
            frame = wire.encode_records(chunk)
            if len(frame) <= max_bytes or (len(chunk) == 1 and self._fits(frame)):
                out.append((frame, len(chunk)))
            elif len(chunk) == 1:
                self.counters["too_large"] += 1
                sys.stderr.write(f"logmill: dropped a record of {len(frame)} bytes, over the "
                                 "server's --max-frame\n")
            else:
                half = len(chunk) // 2
                pending.append(chunk[half:])
                pending.append(chunk[:half])
        return out

    def _fits(self, frame):
        return self.welcome is None or len(frame) - 4 <= self.welcome.max_frame

    def _spill(self, items):
        """Encodes ``items`` into the end of the spool (order lock held by the caller)."""
        if items:
            self._spool.append(self._encode(items, self._spool.segment_bytes))

    def _read_acks(self, wait):
        # A timeout on the socket rather than select(): Python waits with poll(), which has no
        # FD_SETSIZE limit (a program with over 1024 files open would break select).
        sock = self._sock
        sock.settimeout(wait)
        try:
            data = sock.recv(65536)
        except (BlockingIOError, socket.timeout):
            return
        finally:
            sock.settimeout(self._connect_timeout)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self._inbox += data
        while True:
            reply = self._next_reply()
            if reply is None:
                break
            if isinstance(reply, wire.Ack):
                self._acked(reply.count)
        return

    def _read_reply(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_reply()
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no welcome from the server")
            self._sock.settimeout(left)
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            self._inbox += data

    def _next_reply(self):
        payload, used = wire.take_frame(self._inbox)
        if payload is None:
            return None
        del self._inbox[:used]
        reply = wire.decode_server_frame(payload)
        if isinstance(reply, wire.ServerError):
            if reply.code in ("unauthorized", "undecodable", "frameTooLarge"):
                # A refused token will be refused again; a frame the server cannot read is a
                # bug here, and resending it would loop. Both stop the client, loudly.
                raise Refused(reply.code, reply.message)
            if reply.code == "helloNotFirst":
                return self._next_reply()
            # shuttingDown, idleTimeout, ...: the connection ends; reconnect and resend.
            raise ConnectionResetError(f"server error {reply.code}: {reply.message}")
        return reply

    def _acked(self, count):
        unacked = self._unacked
        while unacked and unacked[0][0] <= count:
            _, entry = unacked.popleft()
            self._unacked_bytes -= len(entry.frame)
            self.counters["acked"] += entry.records
            if entry.spool_ref is not None:
                self._spool.acked(entry.spool_ref)
        self._delay = self._backoff[0]
        if not unacked:
            self._notify()

    def _notify(self):
        with self._idle:
            self._idle.notify_all()

    def stats(self):
        """Counters: connects, reconnects, acked, resent, dropped, too_large, lost, and the
        spool's spooled and spool_dropped."""
        out = dict(self.counters)
        if self._spool is not None:
            out["spooled"] = self._spool.spooled
            out["spool_dropped"] = self._spool.dropped
        return out


def _drain(queue):
    items = []
    while True:
        try:
            items.append(queue.popleft())
        except IndexError:
            return items


def _take(queue, n):
    items = []
    popleft = queue.popleft
    try:
        for _ in range(n):
            items.append(popleft())
    except IndexError:
        pass
    return items


def _fields(fields):
    return [(str(k), v if isinstance(v, str) else _json.dumps(v, default=str))
            for k, v in fields.items()]


# The attributes every LogRecord has: anything else was passed with extra= and becomes a field.
_PLAIN = vars(__import__("logging").LogRecord("", 0, "", 0, "", (), None))
_STANDARD = frozenset(_PLAIN) | {"message", "asctime", "taskName"}
# A record with no more attributes than a plain LogRecord has no extra= ones: the common case,
# told by one len() instead of a set difference.
_PLAIN_COUNT = len(_PLAIN)
# logging's level numbers to wire levels, for the standard ones; others through python_level.
_LEVELS = {n: wire.python_level(n) for n in (0, 5, 10, 20, 30, 40, 50)}


def _from_logging(entry):
    """A record tuple from the handler's (LogRecord, message, stack trace) entry."""
    record, message, stack = entry
    attributes = record.__dict__
    fields = None
    if len(attributes) > _PLAIN_COUNT:
        extra = attributes.keys() - _STANDARD
        if extra:
            # In the order they were set (extra= keeps the caller's order).
            fields = [(k, v if isinstance(v, str) else _json.dumps(v, default=str))
                      for k, v in attributes.items() if k in extra]
    levelno = attributes["levelno"]
    level = _LEVELS.get(levelno)
    if level is None:
        level = wire.python_level(levelno)
    return (int(attributes["created"] * 1e9), level, False, message,
            attributes["name"], "", "", attributes["module"] or "", attributes["pathname"] or "",
            attributes["lineno"] or 0, attributes["funcName"] or "", attributes["process"] or 0,
            attributes["processName"] or "", (attributes["thread"] or 0) & 0xFFFFFFFFFFFFFFFF,
            attributes["threadName"] or "", stack, fields)
