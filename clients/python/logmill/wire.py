"""logmill's native wire format, by hand: Cap'n Proto frames without a Cap'n Proto library.

What this file holds: the encoder of the two frames a client sends (``hello``, and ``record`` /
``batch`` frames of ``LogRecord``), and the decoder of the ``ServerFrame`` the server answers
with (``welcome``, ``ack``, ``error``). It knows the layout of ``schema/logmill.capnp`` and
nothing else; sockets, queues and the spool live in ``client.py`` and ``spool.py``.

Layout (Cap'n Proto encoding spec, standard unpacked serialization, one segment):

- a frame is a 4-byte big-endian payload length, then the payload;
- the payload is a segment table (``0`` = one segment, then its size in words), then the segment;
- a struct pointer is ``offset << 2`` in its low 32 bits (offset in words from the word after the
  pointer), data and pointer section sizes in its high 32; a list pointer is ``offset << 2 | 1``
  and ``count << 3 | element size``; a ``List(Struct)`` is "inline composite" (element size 7,
  count in words) and starts with a tag word shaped like a struct pointer whose offset is the
  element count;
- a ``Text`` is a byte list with a NUL terminator, padded to a word.

The encoder writes the same bytes as logmill's Rust encoder (``protocol::native::encode_records``):
structs first, then texts in pointer order, which the server's fast decoding path reads
directly. ``tests/client_python.rs`` checks it byte for byte against frames the Rust encoder made.
"""

import struct

# Level, as in the schema's enum (the numbers are the wire values).
LEVELS = {
    "trace": 1,
    "debug": 2,
    "info": 3,
    "notice": 4,
    "warning": 5,
    "warn": 5,
    "error": 6,
    "critical": 7,
    "fatal": 7,
    "alert": 8,
    "emergency": 9,
}

ERROR_CODES = (
    "frameTooLarge",
    "undecodable",
    "helloNotFirst",
    "shuttingDown",
    "slowReader",
    "idleTimeout",
    "unauthorized",
)

#: Server frames are acks, welcomes and error messages, all small; a longer prefix means the bytes
#: are not logmill's (the Rust client's ``MAX_SERVER_FRAME``).
MAX_SERVER_FRAME = 64 * 1024


def python_level(levelno):
    """The wire level of a ``logging`` level number (the table in the schema)."""
    if levelno >= 50:
        return 7
    if levelno >= 40:
        return 6
    if levelno >= 30:
        return 5
    if levelno >= 20:
        return 3
    if levelno >= 10:
        return 2
    return 1


# LogRecord: 4 data words, 11 pointers. Data: timestampNs u64 at byte 0, level u16 at 8, the body's
# union tag u16 at 10, line u32 at 12, processId u32 at 16, threadId u64 at 24.
RECORD_DATA = struct.Struct("<QHHII4xQ")
RECORD_WORDS = 15
_RECORD_STRUCT_HIGH = 4 | (11 << 16)
_FIELD_STRUCT_HIGH = 0 | (2 << 16)
_POINTER = struct.Struct("<II")
_ZEROS = bytes(8)


def _text_pointer(offset, nbytes):
    """A pointer to a byte list of ``nbytes`` (NUL included), ``offset`` words after it."""
    return _POINTER.pack((offset << 2) | 1, (nbytes << 3) | 2)


class Record(tuple):
    """One record as the client keeps it until it is encoded: a plain tuple, cheap to make.

    Fields, in order: timestamp_ns, level (wire number), is_json, body, logger, host, service,
    module, file, line, function, process_id, process_name, thread_id, thread_name, stack_trace,
    fields (a list of (key, value) strings, or None).
    """

    __slots__ = ()


def record(body, level=3, *, json=False, timestamp_ns=0, logger="", host="", service="",
           module="", file="", line=0, function="", process_id=0, process_name="",
           thread_id=0, thread_name="", stack_trace="", fields=None):
    """A record tuple for :func:`encode_records` (keyword names as in the schema)."""
    return (timestamp_ns, level, json, body, logger, host, service, module, file, line,
            function, process_id, process_name, thread_id, thread_name, stack_trace, fields)


def _site(texts):
    """The layout of one site (the texts of pointer slots 1-8, in order): the padded texts
    joined, and the two integers ``encode_records`` makes the slots' eight pointer words from,
    ``site_words + base * each``, where ``base`` is the record's text position relative to its
    pointers. An empty text is a null pointer, as the Rust encoder leaves it."""
    block = bytearray()
    site_words = 0
    each = 0
    for j, value in enumerate(texts):
        if not value:
            continue
        b = value.encode("utf-8", "replace")
        slot = j + 1
        # This text's pointer offset is base + (its word in the block) - slot - 1.
        c = (len(block) >> 3) - slot - 1
        site_words += (4 * c + 1 + (((len(b) + 1) << 3 | 2) << 32)) << (64 * j)
        each += 4 << (64 * j)
        block += b
        block += _ZEROS[: 8 - (len(b) & 7)]
    return bytes(block), site_words, each


def encode_records(records):
    """One frame (length prefix included) holding ``records``: a ``record`` frame for one, a
    ``batch`` otherwise. This is the hot path of the sender thread: one pass, each text encoded
    once, every word written with a precompiled ``struct``.
    """
    n = len(records)
    if n == 1:
        # root pointer, ClientFrame (tag 0 = record, then its pointer), the record's struct.
        head = bytearray(24)
        _POINTER.pack_into(head, 0, 0, 1 | (1 << 16))
        _POINTER.pack_into(head, 16, 0, _RECORD_STRUCT_HIGH)
        first = 3
    else:
        # root pointer, ClientFrame (tag 1 = batch, then the list pointer), the list's tag word.
        head = bytearray(32)
        _POINTER.pack_into(head, 0, 0, 1 | (1 << 16))
        struct.pack_into("<H", head, 8, 1)
        _POINTER.pack_into(head, 16, 1, ((n * RECORD_WORDS) << 3) | 7)
        _POINTER.pack_into(head, 24, n << 2, _RECORD_STRUCT_HIGH)
        first = 4
    structs = bytearray(n * RECORD_WORDS * 8)
    texts = bytearray()
    # Word index (in the segment) where the texts start; each text's pointer offset is computed
    # from it and the text area's current length.
    text_base = first + n * RECORD_WORDS
    pack_data = RECORD_DATA.pack_into
    pack_pointer = _POINTER.pack_into
    # The texts of slots 1-8 (logger, host, service, module, file, function, process and thread
    # names) repeat from record to record as one "site": each distinct site is laid out once per
    # batch (its texts padded and joined, in slot order) and copied after each record's body.
    # Its eight pointers are then one 64-byte integer: each non-empty slot's word is
    # ``(offset << 2 | 1) | high << 32``, and the offsets of a record differ from the site's
    # own by the same amount for every slot, so one multiply-add makes all eight (no word
    # carries into the next: an offset is far below 2**30 words).
    sites = {}
    for i, r in enumerate(records):
        at = i * RECORD_WORDS * 8
        pack_data(structs, at, r[0], r[1], 1 if r[2] else 0, r[9], r[11], r[13])
        pointer_word = first + i * RECORD_WORDS + 4
        # The body is always set (an empty message is an empty text, not a null pointer), and
        # rarely repeats, so it is not looked up.
        b = r[3].encode("utf-8", "replace")
        offset = text_base + (len(texts) >> 3) - pointer_word - 1
        pack_pointer(structs, at + 32, (offset << 2) | 1, (len(b) + 1) << 3 | 2)
        texts += b
        texts += _ZEROS[: 8 - (len(b) & 7)]
        key = r[4:9] + r[10:15:2]
        site = sites.get(key)
        if site is None:
            site = sites[key] = _site(key)
        block, site_words, each = site
        if block:
            base = text_base + (len(texts) >> 3) - pointer_word
            structs[at + 40: at + 104] = (site_words + base * each).to_bytes(64, "little")
            texts += block
        stack = r[15]
        if stack:
            b = stack.encode("utf-8", "replace")
            offset = text_base + (len(texts) >> 3) - (pointer_word + 9) - 1
            pack_pointer(structs, at + 13 * 8, (offset << 2) | 1, (len(b) + 1) << 3 | 2)
            texts += b
            texts += _ZEROS[: 8 - (len(b) & 7)]
        fields = r[16]
        if fields:
            count = len(fields)
            offset = text_base + (len(texts) >> 3) - (pointer_word + 10) - 1
            pack_pointer(structs, at + 14 * 8, (offset << 2) | 1, ((count * 2) << 3) | 7)
            list_at = len(texts)
            texts += _POINTER.pack(count << 2, _FIELD_STRUCT_HIGH)
            texts += bytes(count * 16)
            for j, (key, value) in enumerate(fields):
                for k, s in enumerate((key, value)):
                    b = s.encode("utf-8", "replace")
                    nbytes = len(b) + 1
                    ptr_at = list_at + 8 + j * 16 + k * 8
                    offset = (len(texts) - ptr_at) // 8 - 1
                    pack_pointer(texts, ptr_at, (offset << 2) | 1, (nbytes << 3) | 2)
                    texts += b
                    texts += _ZEROS[: 8 - (len(b) & 7)]
    words = (len(head) + len(structs) + len(texts)) >> 3
    return b"".join((struct.pack(">II", 8 + words * 8, 0), struct.pack("<I", words), head,
                     structs, texts))


def encode_hello(app, instance, token, want_acks=True):
    """The ``hello`` frame (length prefix included): the connection's app, instance and token."""
    texts = bytearray()
    pointers = bytearray(24)
    # root pointer, ClientFrame (tag 2 = hello, its pointer), Hello (1 data word, 3 pointers).
    first_text = 3 + 1 + 3
    for slot, value in enumerate((app, instance, token)):
        b = value.encode("utf-8", "replace")
        offset = first_text + (len(texts) >> 3) - (4 + slot) - 1
        _POINTER.pack_into(pointers, slot * 8, (offset << 2) | 1, ((len(b) + 1) << 3) | 2)
        texts += b
        texts += _ZEROS[: 8 - (len(b) & 7)]
    head = bytearray(32)
    _POINTER.pack_into(head, 0, 0, 1 | (1 << 16))
    struct.pack_into("<H", head, 8, 2)
    _POINTER.pack_into(head, 16, 0, 1 | (3 << 16))
    head[24] = 1 if want_acks else 0
    words = (len(head) + len(pointers) + len(texts)) >> 3
    return b"".join((struct.pack(">II", 8 + words * 8, 0), struct.pack("<I", words), head,
                     pointers, texts))


def frame_records(frame):
    """How many records a frame made by :func:`encode_records` holds (spool replay counts them)."""
    if len(frame) < 36:
        raise ValueError("not a record frame")
    (tag,) = struct.unpack_from("<H", frame, 20)
    if tag == 0:
        return 1
    if tag == 1:
        (low,) = struct.unpack_from("<I", frame, 36)
        return low >> 2
    raise ValueError("not a record frame")


class ProtocolError(Exception):
    """The server's bytes are not a ServerFrame."""


class Ack:
    __slots__ = ("count", "last_seq")

    def __init__(self, count, last_seq):
        self.count = count
        self.last_seq = last_seq

    def __repr__(self):
        return f"Ack(count={self.count}, last_seq={self.last_seq})"


class Welcome:
    __slots__ = ("server", "version", "max_frame")

    def __init__(self, server, version, max_frame):
        self.server = server
        self.version = version
        self.max_frame = max_frame

    def __repr__(self):
        return f"Welcome({self.server!r}, {self.version!r}, max_frame={self.max_frame})"


class ServerError:
    __slots__ = ("code", "message")

    def __init__(self, code, message):
        self.code = code
        self.message = message

    def __repr__(self):
        return f"ServerError({self.code!r}, {self.message!r})"


class _Segment:
    """One segment's bytes, every read bounds-checked: the bytes come from the network."""

    def __init__(self, data):
        self.data = data
        self.words = len(data) // 8

    def word(self, i):
        if not 0 <= i < self.words:
            raise ProtocolError("pointer out of the segment")
        return struct.unpack_from("<II", self.data, i * 8)

    def struct_at(self, pointer_word):
        """(data word index, data words, pointer index, pointer count) of the struct pointed to
        from ``pointer_word``, or None for a null pointer."""
        low, high = self.word(pointer_word)
        if low == 0 and high == 0:
            return None
        if low & 3 != 0:
            raise ProtocolError("expected a struct pointer")
        offset = low >> 2
        if offset & (1 << 29):
            offset -= 1 << 30
        data = pointer_word + 1 + offset
        data_words, pointer_count = high & 0xFFFF, high >> 16
        if data < 0 or data + data_words + pointer_count > self.words:
            raise ProtocolError("struct out of the segment")
        return data, data_words, data + data_words, pointer_count

    def text(self, s, slot):
        _, _, pointers, count = s
        if slot >= count:
            return ""
        low, high = self.word(pointers + slot)
        if low == 0 and high == 0:
            return ""
        if low & 3 != 1 or high & 7 != 2:
            raise ProtocolError("expected a text")
        offset = low >> 2
        if offset & (1 << 29):
            offset -= 1 << 30
        start = (pointers + slot + 1 + offset) * 8
        n = high >> 3
        if start < 0 or n == 0 or start + n > len(self.data):
            raise ProtocolError("text out of the segment")
        return self.data[start : start + n - 1].decode("utf-8", "replace")

    def u(self, s, byte, fmt, size):
        data, data_words, _, _ = s
        if byte + size > data_words * 8:
            return 0
        return struct.unpack_from(fmt, self.data, data * 8 + byte)[0]


def decode_server_frame(payload):
    """A ServerFrame payload (without its length prefix) as :class:`Ack`, :class:`Welcome` or
    :class:`ServerError`.

    Raises :class:`ProtocolError` for anything else.
    """
    if len(payload) < 8:
        raise ProtocolError("short server frame")
    count, words = struct.unpack_from("<II", payload, 0)
    if count != 0:
        raise ProtocolError("server frame of more than one segment")
    if 8 + words * 8 > len(payload):
        raise ProtocolError("segment longer than the frame")
    seg = _Segment(bytes(payload[8 : 8 + words * 8]))
    root = seg.struct_at(0)
    if root is None:
        raise ProtocolError("empty server frame")
    tag = seg.u(root, 0, "<H", 2)
    if root[3] < 1:
        raise ProtocolError("server frame without its member")
    inner = seg.struct_at(root[2])
    if inner is None:
        inner = (0, 0, 0, 0)
    if tag == 0:
        return Ack(seg.u(inner, 0, "<Q", 8), seg.u(inner, 8, "<Q", 8))
    if tag == 1:
        code = seg.u(inner, 0, "<H", 2)
        name = ERROR_CODES[code] if code < len(ERROR_CODES) else f"code{code}"
        return ServerError(name, seg.text(inner, 0))
    if tag == 2:
        return Welcome(seg.text(inner, 0), seg.text(inner, 1), seg.u(inner, 0, "<I", 4))
    raise ProtocolError(f"unknown server frame {tag}")


def take_frame(buf):
    """The first whole frame's payload in ``buf`` (a bytearray) and the bytes it took, or
    ``(None, 0)`` when more bytes are needed. Raises :class:`ProtocolError` over the limit."""
    if len(buf) < 4:
        return None, 0
    (n,) = struct.unpack_from(">I", buf, 0)
    if n > MAX_SERVER_FRAME:
        raise ProtocolError(f"server frame of {n} bytes is over the limit of {MAX_SERVER_FRAME}")
    if len(buf) < 4 + n:
        return None, 0
    return bytes(buf[4 : 4 + n]), 4 + n
