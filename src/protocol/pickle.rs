//! Python's `logging.handlers.SocketHandler`: each record is a 4-byte big-endian length (cut by
//! [`super::frame`]) then a pickle of the `LogRecord`'s attribute dict, which [`decode_record`]
//! turns into a [`Record`].
//!
//! # A pickle is a program
//!
//! Unpickling runs a small stack machine whose instructions can import and call any Python
//! function. `serde-pickle`, which does the decoding here, executes nothing: it knows a few
//! builtin data types and no code. But it was written for trusted data, and four of its
//! behaviours matter on a port anyone can reach (each is shown by a test below):
//!
//! - a class instance (`INST`, `OBJ`, `NEWOBJ`, `BUILD`) silently becomes an empty dict or its
//!   state, rather than an error;
//! - values are trees, so every memo reference (`BINGET`) is a deep copy: a 1 MB pickle that
//!   lists one 500 kB string 250,000 times decodes to 125 GB;
//! - converting and dropping those trees recurses, so deep nesting overflows the stack (1 MiB
//!   of nested lists does, on an 8 MiB stack);
//! - each `MARK` reserves room for 128 values (some 4 KiB): 4 KiB per byte of input.
//!
//! Declared lengths (`BINUNICODE`, `BINBYTES8`, ...) are not among them: `serde-pickle` reads
//! them through a bounded reader that grows with the bytes actually there.
//!
//! So [`check`] first runs the program on *shapes* instead of values: for each stack entry it
//! knows only its kind, its nesting depth and its size once every memo reference is expanded.
//! It refuses whatever is not plain data, any declared length past the end of the payload, text
//! numbers over [`MAX_NUMBER_LEN`], nesting (of values or of marks) over [`MAX_DEPTH`], and
//! programs whose expanded size exceeds a small multiple of their length. What passes is decoded
//! by `serde-pickle` with its work bounded by the payload size. The check costs one pass over
//! the opcodes and memory for one shape per stack entry and memo slot.
//!
//! Plain data is what `pickle.dumps(record.__dict__, 1)` produces from a `LogRecord`: `None`,
//! bools, numbers, str, bytes, lists, tuples, dicts and sets, the last (and bytes and
//! bytearrays, before protocol 3) spelled as calls to a handful of builtins that `serde-pickle`
//! knows: [`BUILTINS`]. Every other global is refused by name.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use serde_pickle::{DeOptions, HashableValue, Value};

use crate::record::{Body, Level, Record, Value as FieldValue};

/// The deepest a value may nest (a dict in a list in a dict is 3), and the most `MARK`s that may
/// be open at once. A `LogRecord` dict is 1, its `extra=` values rarely more than a few; 64
/// bounds the recursion of decoding, converting and dropping far below any thread's stack.
pub const MAX_DEPTH: u32 = 64;

/// The longest number written as text (`INT`, `LONG`, `FLOAT`) or as bytes (`LONG1`, `LONG4`).
/// Big integers are parsed and printed in quadratic time; a 1 KiB one (some 2,400 digits) still
/// takes microseconds, and no `LogRecord` attribute comes close.
pub const MAX_NUMBER_LEN: usize = 1024;

/// How much larger than its payload a pickle may decode to, memo references expanded: enough
/// for the same string sent twice (`msg` and `message` are often one object) and more.
const EXPANSION: u64 = 4;

/// Slack on top of [`EXPANSION`] so tiny payloads are not held to a tiny budget.
const EXPANSION_SLACK: u64 = 4096;

/// The globals that stand for plain data, as `serde-pickle` decodes them, by module and name
/// (`__builtin__` is Python 2's `builtins`). `set` and `frozenset` are how protocols before 4
/// write sets, `_codecs.encode` how protocols before 3 write bytes, `bytearray` a bytearray.
/// `copyreg._reconstructor`, which `serde-pickle` also knows, rebuilds class instances and is
/// refused.
pub const BUILTINS: [(&str, &str); 11] = [
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "list"),
    ("builtins", "bytearray"),
    ("builtins", "int"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "list"),
    ("__builtin__", "bytearray"),
    ("__builtin__", "int"),
    ("_codecs", "encode"),
];

/// Whether `byte` can open a pickle as Python's handlers send it: `PROTO` (0x80, protocol 2 and
/// later), or for protocol 1 `EMPTY_DICT` (`}`) or `MARK` (`(`). What tells a pickle's length
/// prefix from a native frame's ([`super::detect`]) and a pickle datagram from syslog
/// ([`super::datagram`]).
pub fn can_start(byte: u8) -> bool {
    matches!(byte, 0x80 | b'}' | b'(')
}

/// Why a payload is not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickleError {
    /// The payload ends inside an opcode, or before `STOP`.
    Truncated,
    /// Something that is not plain data: `what` names it (`GLOBAL os.system`, `BUILD`, ...).
    NotData { what: String, at: usize },
    /// Over one of the limits (nesting, expanded size, number length).
    TooComplex { what: String, at: usize },
    /// Plain data that `serde-pickle` cannot decode safely (a set of floats).
    Unsupported { what: String, at: usize },
    /// Not a well-formed pickle: unknown opcode, stack underflow, wrong operand types, ...
    Malformed { what: String, at: usize },
    /// Passed the check, yet `serde-pickle` refused it (an invalid literal, say).
    Decode(String),
    /// A valid pickle of something other than a dict.
    NotADict(&'static str),
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleError::Truncated => f.write_str("pickle ends before its STOP opcode"),
            PickleError::NotData { what, at } => write!(
                f,
                "pickle holds {what} at byte {at}: only plain data (None, bool, numbers, str, \
                 bytes, list, tuple, dict, set) is accepted"
            ),
            PickleError::TooComplex { what, at } => {
                write!(f, "pickle is too complex at byte {at}: {what}")
            }
            PickleError::Unsupported { what, at } => {
                write!(f, "pickle holds {what} at byte {at}")
            }
            PickleError::Malformed { what, at } => {
                write!(f, "malformed pickle at byte {at}: {what}")
            }
            PickleError::Decode(e) => write!(f, "undecodable pickle: {e}"),
            PickleError::NotADict(found) => {
                write!(
                    f,
                    "pickle holds {found}, not a dict of LogRecord attributes"
                )
            }
        }
    }
}

impl std::error::Error for PickleError {}

/// Decodes one `SocketHandler` payload (the pickle, without its length prefix) into a record.
///
/// `SocketHandler.makePickle` has already formatted the message into `msg` (and set `args` to
/// `None`), and put a traceback into `exc_text`. The mapping: `created` (seconds) is the
/// timestamp; `levelno` the level (`levelname` if there is none); `name` the logger; `msg` the
/// message (or `message`, the formatted text, when another sender includes it: then `msg`
/// becomes a field if it differs); `pathname` the file; `module`, `lineno`, `funcName`,
/// `process`, `processName`, `thread`, `threadName` the fields of the same meaning; `exc_text`
/// and `stack_info`, joined by a newline, the stack trace. `filename` is kept as a field only
/// when it is not the last part of `pathname`. Dropped as redundant: `msecs`, `relativeCreated`,
/// `levelname`, and `args`, `exc_info` and `taskName` when `None` (or empty). Every other
/// attribute (the `extra=` ones) becomes a field, in key order (`serde-pickle` sorts a dict),
/// its type kept (see [`typed`]: `None`, bools, ints, floats, str, and containers as JSON;
/// bytes as Python would `repr()` them). A standard attribute of an unexpected type becomes a
/// field the same way.
///
/// # Errors
/// [`PickleError`] when the payload is not a pickle of plain data within the limits, or not a
/// dict. Nothing in it is executed either way.
pub fn decode_record(payload: &[u8]) -> Result<Record<'static>, PickleError> {
    check(payload)?;
    let value = serde_pickle::value_from_slice(payload, DeOptions::new())
        .map_err(|e| PickleError::Decode(e.to_string()))?;
    match value {
        Value::Dict(dict) => Ok(to_record(dict)),
        Value::None => Err(PickleError::NotADict("None")),
        Value::Bool(_) => Err(PickleError::NotADict("a bool")),
        Value::I64(_) | Value::Int(_) | Value::F64(_) => Err(PickleError::NotADict("a number")),
        Value::Bytes(_) => Err(PickleError::NotADict("bytes")),
        Value::String(_) => Err(PickleError::NotADict("a str")),
        Value::List(_) => Err(PickleError::NotADict("a list")),
        Value::Tuple(_) => Err(PickleError::NotADict("a tuple")),
        Value::Set(_) | Value::FrozenSet(_) => Err(PickleError::NotADict("a set")),
    }
}

// ---------------------------------------------------------------------------------------------
// The check: the pickle machine run on shapes.
// ---------------------------------------------------------------------------------------------

/// What the check knows about a value.
#[derive(Clone, Copy, Debug)]
struct Shape<'p> {
    kind: Kind<'p>,
    /// 0 for a scalar, 1 + the deepest element for a container.
    depth: u32,
    /// Nodes plus bytes of text, memo references expanded: what decoding it will build.
    size: u64,
    /// A float is in it (or is it): see [`Machine::no_floats_in_sets`].
    float: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'p> {
    Scalar,
    /// A str, whose bytes `STACK_GLOBAL` may need as a module or a name.
    Str(&'p [u8]),
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    /// One of [`BUILTINS`], waiting for `REDUCE`.
    Builtin(Builtin),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Builtin {
    Set,
    FrozenSet,
    List,
    ByteArray,
    Int,
    Encode,
}

/// A stack entry: a value, or a reference to a memo slot (which is what `serde-pickle` keeps on
/// its stack after `PUT`, and what `GET` pushes).
#[derive(Clone, Copy, Debug)]
enum Slot<'p> {
    Value(Shape<'p>),
    Memo(u32),
}

struct Memo<'p> {
    shape: Shape<'p>,
    /// A `GET` has copied it: it must not change any more (see [`Machine::mutate`]).
    referenced: bool,
}

struct Machine<'p> {
    payload: &'p [u8],
    pos: usize,
    /// Where the opcode being run starts, for error messages.
    at: usize,
    stack: Vec<Slot<'p>>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Memo<'p>>,
    /// Size of everything built so far, memo copies included, and its limit.
    work: u64,
    budget: u64,
}

/// Runs the pickle in `payload` on shapes and refuses it if decoding it could execute anything,
/// allocate past its length, or build more than a bounded multiple of its size.
///
/// # Errors
/// [`PickleError::NotData`], [`PickleError::TooComplex`], [`PickleError::Malformed`] or
/// [`PickleError::Truncated`], each naming the opcode and where it is.
pub fn check(payload: &[u8]) -> Result<(), PickleError> {
    let mut m = Machine {
        payload,
        pos: 0,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        work: 0,
        budget: (payload.len() as u64)
            .saturating_mul(EXPANSION)
            .saturating_add(EXPANSION_SLACK),
    };
    loop {
        m.at = m.pos;
        if m.step()? {
            break;
        }
    }
    if m.pos != payload.len() {
        return Err(m.malformed("bytes after STOP"));
    }
    Ok(())
}

/// A scalar of `len` bytes.
fn scalar<'p>(len: usize) -> Shape<'p> {
    Shape {
        kind: Kind::Scalar,
        depth: 0,
        size: (len as u64).saturating_add(1),
        float: false,
    }
}

fn empty(kind: Kind<'_>) -> Shape<'_> {
    Shape {
        kind,
        depth: 1,
        size: 1,
        float: false,
    }
}

impl<'p> Machine<'p> {
    /// Runs one opcode; `true` at `STOP`.
    fn step(&mut self) -> Result<bool, PickleError> {
        let op = self.byte()?;
        match op {
            b'.' => {
                // STOP: the value is the top of the stack.
                let value = self.pop()?;
                self.element(value)?;
                return Ok(true);
            }
            0x80 => {
                self.bytes(1)?; // PROTO
            }
            0x95 => {
                self.bytes(8)?; // FRAME: a hint for buffered readers
            }
            b'(' => {
                if self.marks.len() >= MAX_DEPTH as usize {
                    return Err(self.too_complex(format!("over {MAX_DEPTH} open MARKs")));
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                // POP: the top, or the mark itself when nothing is above it (as serde-pickle).
                if self.stack.len() == self.mark_floor() {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?; // POP_MARK
            }
            b'2' => {
                // DUP: Python's pickler never writes it, and serde-pickle deep-copies for it.
                return Err(self.not_data("DUP (which Python's pickler never writes)".into()));
            }

            // Memo
            b'p' | b'q' | b'r' => {
                // PUT, BINPUT, LONG_BINPUT
                let id = self.memo_index(op)?;
                self.put(id)?;
            }
            0x94 => {
                // MEMOIZE: the next free index, as serde-pickle counts it.
                let id = u32::try_from(self.memo.len())
                    .map_err(|_| self.too_complex("memo over u32::MAX".into()))?;
                self.put(id)?;
            }
            b'g' | b'h' | b'j' => {
                // GET, BINGET, LONG_BINGET
                let id = self.memo_index(op)?;
                self.get(id)?;
            }

            // Scalars
            b'N' | 0x88 | 0x89 => self.push(scalar(0))?, // NONE, NEWTRUE, NEWFALSE
            b'I' | b'L' | b'F' => {
                // INT, LONG, FLOAT as text
                let line = self.line()?;
                self.number(line.len())?;
                self.push(Shape {
                    float: op == b'F',
                    ..scalar(line.len())
                })?;
            }
            b'S' | b'V' => {
                // STRING (escaped), UNICODE (raw-unicode-escape), as text
                let line = self.line()?;
                let kind = if op == b'V' {
                    Kind::Str(line)
                } else {
                    Kind::Scalar
                };
                self.push(Shape {
                    kind,
                    ..scalar(line.len())
                })?;
            }
            b'G' => {
                // BINFLOAT
                self.bytes(8)?;
                self.push(Shape {
                    float: true,
                    ..scalar(8)
                })?;
            }
            b'J' => self.fixed(4)?, // BININT
            b'K' => self.fixed(1)?, // BININT1
            b'M' => self.fixed(2)?, // BININT2
            0x8a => {
                // LONG1
                let len = usize::from(self.byte()?);
                self.number(len)?;
                self.fixed(len)?;
            }
            0x8b => {
                // LONG4
                let len = self.i32_len()?;
                self.number(len)?;
                self.fixed(len)?;
            }
            b'C' | b'U' => {
                // SHORT_BINBYTES, SHORT_BINSTRING
                let len = usize::from(self.byte()?);
                self.fixed(len)?;
            }
            0x8c => {
                // SHORT_BINUNICODE
                let len = usize::from(self.byte()?);
                self.text(len)?;
            }
            b'B' => {
                // BINBYTES
                let len = self.u32_le()? as usize;
                self.fixed(len)?;
            }
            b'T' => {
                // BINSTRING: a signed length
                let len = self.i32_len()?;
                self.fixed(len)?;
            }
            b'X' => {
                // BINUNICODE
                let len = self.u32_le()? as usize;
                self.text(len)?;
            }
            0x8e | 0x96 => {
                // BINBYTES8, BYTEARRAY8
                let len = self.u64_len()?;
                self.fixed(len)?;
            }
            0x8d => {
                // BINUNICODE8
                let len = self.u64_len()?;
                self.text(len)?;
            }

            // Containers
            b')' => self.push(empty(Kind::Tuple))?,
            b']' => self.push(empty(Kind::List))?,
            b'}' => self.push(empty(Kind::Dict))?,
            0x8f => self.push(empty(Kind::Set))?,
            0x85..=0x87 => {
                // TUPLE1, TUPLE2, TUPLE3
                let n = usize::from(op - 0x84);
                let floor = self.mark_floor();
                if self.stack.len() < floor + n {
                    return Err(self.malformed("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                let tuple = self.build(Kind::Tuple, &items)?;
                self.push(tuple)?;
            }
            b't' | b'l' | b'd' | 0x91 => {
                // TUPLE, LIST, DICT, FROZENSET: everything since the mark
                let kind = match op {
                    b't' => Kind::Tuple,
                    b'l' => Kind::List,
                    b'd' => Kind::Dict,
                    _ => Kind::FrozenSet,
                };
                let items = self.pop_mark()?;
                let container = self.build(kind, &items)?;
                self.push(container)?;
            }
            b'a' => {
                // APPEND
                let item = self.pop()?;
                self.mutate(Kind::List, &[item])?;
            }
            b's' => {
                // SETITEM
                let value = self.pop()?;
                let key = self.pop()?;
                self.mutate(Kind::Dict, &[key, value])?;
            }
            b'e' | b'u' | 0x90 => {
                // APPENDS, SETITEMS, ADDITEMS
                let kind = match op {
                    b'e' => Kind::List,
                    b'u' => Kind::Dict,
                    _ => Kind::Set,
                };
                let items = self.pop_mark()?;
                self.mutate(kind, &items)?;
            }

            // Globals: only the builtins that stand for data.
            b'c' => {
                // GLOBAL: module and name, each on a line
                let module = self.line()?;
                let name = self.line()?;
                let builtin = self.builtin(module, name, "GLOBAL")?;
                self.push(empty(Kind::Builtin(builtin)))?;
            }
            0x93 => {
                // STACK_GLOBAL: module and name are strs on the stack
                let name = self.pop()?;
                let module = self.pop()?;
                match (self.shape(name)?.kind, self.shape(module)?.kind) {
                    (Kind::Str(name), Kind::Str(module)) => {
                        let builtin = self.builtin(module, name, "STACK_GLOBAL")?;
                        self.push(empty(Kind::Builtin(builtin)))?;
                    }
                    _ => return Err(self.malformed("STACK_GLOBAL of a non-str")),
                }
            }
            b'R' => self.reduce()?,

            // Everything else builds objects or reaches outside the pickle.
            b'i' | b'o' | 0x81 | 0x92 | b'b' => {
                let name = match op {
                    b'i' => "INST",
                    b'o' => "OBJ",
                    0x81 => "NEWOBJ",
                    0x92 => "NEWOBJ_EX",
                    _ => "BUILD",
                };
                return Err(self.not_data(format!("{name} (a class instance)")));
            }
            0x82..=0x84 => {
                return Err(self.not_data("EXT (a registered class or function)".into()));
            }
            b'P' | b'Q' => return Err(self.not_data("PERSID (an external object)".into())),
            0x97 | 0x98 => return Err(self.not_data("an out-of-band buffer".into())),
            other => return Err(self.malformed(format!("unknown opcode 0x{other:02x}"))),
        }
        Ok(false)
    }

    // --- reading operands ---

    fn bytes(&mut self, n: usize) -> Result<&'p [u8], PickleError> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let bytes = self
            .payload
            .get(self.pos..end)
            .ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.bytes(1)?[0])
    }

    fn u32_le(&mut self) -> Result<u32, PickleError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A signed 4-byte length; negative is malformed.
    fn i32_len(&mut self) -> Result<usize, PickleError> {
        let b = self.bytes(4)?;
        let len = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(len).map_err(|_| self.malformed("negative length"))
    }

    /// An 8-byte length; one past the payload is caught by the read that follows it.
    fn u64_len(&mut self) -> Result<usize, PickleError> {
        let b = self.bytes(8)?;
        let len = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        usize::try_from(len).map_err(|_| PickleError::Truncated)
    }

    /// A line, without its `\n` and one `\r` before it (as serde-pickle reads it).
    fn line(&mut self) -> Result<&'p [u8], PickleError> {
        let rest = &self.payload[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        self.pos += len + 1;
        let line = &rest[..len];
        Ok(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// The memo index of a PUT or GET: a decimal line (`p`, `g`), one byte (`q`, `h`) or a
    /// little-endian u32 (`r`, `j`).
    fn memo_index(&mut self, op: u8) -> Result<u32, PickleError> {
        match op {
            b'q' | b'h' => Ok(u32::from(self.byte()?)),
            b'r' | b'j' => self.u32_le(),
            _ => {
                let line = self.line()?;
                let name = if op == b'p' { "PUT" } else { "GET" };
                std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.malformed(format!("{name} of a bad memo index")))
            }
        }
    }

    /// Reads a scalar of `len` bytes and pushes it.
    fn fixed(&mut self, len: usize) -> Result<(), PickleError> {
        self.bytes(len)?;
        self.push(scalar(len))
    }

    /// Reads a str of `len` bytes and pushes it, keeping its bytes for `STACK_GLOBAL`.
    fn text(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.bytes(len)?;
        self.push(Shape {
            kind: Kind::Str(bytes),
            ..scalar(len)
        })
    }

    fn number(&self, len: usize) -> Result<(), PickleError> {
        if len > MAX_NUMBER_LEN {
            return Err(self.too_complex(format!("a number of {len} bytes")));
        }
        Ok(())
    }

    // --- the stack ---

    /// The bottom of the part of the stack that opcodes can reach: items under the last mark
    /// are out of reach until it is popped.
    fn mark_floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, shape: Shape<'p>) -> Result<(), PickleError> {
        self.spend(shape.size)?;
        self.stack.push(Slot::Value(shape));
        Ok(())
    }

    fn pop(&mut self) -> Result<Slot<'p>, PickleError> {
        if self.stack.len() <= self.mark_floor() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Slot<'p>>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn spend(&mut self, size: u64) -> Result<(), PickleError> {
        self.work = self.work.saturating_add(size);
        if self.work > self.budget {
            return Err(self.too_complex(format!(
                "it expands to over {} units (memo references are copies)",
                self.budget
            )));
        }
        Ok(())
    }

    fn shape(&self, slot: Slot<'p>) -> Result<Shape<'p>, PickleError> {
        match slot {
            Slot::Value(shape) => Ok(shape),
            Slot::Memo(id) => self
                .memo
                .get(&id)
                .map(|m| m.shape)
                .ok_or_else(|| self.malformed(format!("memo {id} is not set"))),
        }
    }

    /// The shape of a value about to become an element of a container (or the result): a global
    /// that was never called is refused here, as it would be a function inside the data.
    fn element(&self, slot: Slot<'p>) -> Result<Shape<'p>, PickleError> {
        let shape = self.shape(slot)?;
        if let Kind::Builtin(b) = shape.kind {
            return Err(self.not_data(format!("an uncalled global ({b:?})")));
        }
        Ok(shape)
    }

    /// A new container of `kind` holding `items`.
    fn build(&mut self, kind: Kind<'p>, items: &[Slot<'p>]) -> Result<Shape<'p>, PickleError> {
        let mut shape = empty(kind);
        self.grow(&mut shape, items)?;
        Ok(shape)
    }

    /// Adds `items` to `shape`'s depth and size, refusing nesting over [`MAX_DEPTH`]. The items'
    /// sizes were spent when they were pushed, so only the container's own node is new work.
    fn grow(&self, shape: &mut Shape<'p>, items: &[Slot<'p>]) -> Result<(), PickleError> {
        for &item in items {
            let item = self.element(item)?;
            shape.depth = shape.depth.max(item.depth + 1);
            shape.size = shape.size.saturating_add(item.size);
            shape.float |= item.float;
        }
        if shape.depth > MAX_DEPTH {
            return Err(self.too_complex(format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.no_floats_in_sets(shape)
    }

    /// serde-pickle sorts the elements of a set with an order that is not total once floats
    /// are involved (NaN; an int and a float compared through a lossy cast), and Rust's sort
    /// panics when it notices. A set holding a float, itself or inside a tuple, is refused
    /// (Python loggers hardly ever send one; a float anywhere else is fine).
    fn no_floats_in_sets(&self, shape: &Shape<'p>) -> Result<(), PickleError> {
        if shape.float && matches!(shape.kind, Kind::Set | Kind::FrozenSet) {
            return Err(PickleError::Unsupported {
                what: "a set holding a float, which serde-pickle cannot order".into(),
                at: self.at,
            });
        }
        Ok(())
    }

    /// APPEND(S), SETITEM(S), ADDITEMS: adds `items` to the container on top of the stack.
    ///
    /// A memoized container that a `GET` has already copied must not change: each copy was sized
    /// when it was made, and a later change would make them all larger than counted. Python's
    /// pickler only does that for a container that contains itself, which serde-pickle cannot
    /// decode anyway.
    fn mutate(&mut self, kind: Kind<'p>, items: &[Slot<'p>]) -> Result<(), PickleError> {
        let floor = self.mark_floor();
        let top = match self.stack.last() {
            Some(&top) if self.stack.len() > floor => top,
            _ => return Err(self.malformed("stack underflow")),
        };
        let mut shape = self.shape(top)?;
        if shape.kind != kind {
            return Err(self.malformed(format!("adding to a {:?} as to a {kind:?}", shape.kind)));
        }
        self.grow(&mut shape, items)?;
        match top {
            Slot::Value(_) => {
                if let Some(last) = self.stack.last_mut() {
                    *last = Slot::Value(shape);
                }
            }
            Slot::Memo(id) => {
                let Some(memo) = self.memo.get_mut(&id) else {
                    return Err(self.malformed(format!("memo {id} is not set")));
                };
                if memo.referenced {
                    return Err(self.not_data(
                        "a container changed after it was referenced (a recursive structure)"
                            .into(),
                    ));
                }
                memo.shape = shape;
            }
        }
        Ok(())
    }

    /// PUT: moves the top of the stack into memo slot `id`, leaving a reference in its place.
    fn put(&mut self, id: u32) -> Result<(), PickleError> {
        let top = self.pop()?;
        let Slot::Value(shape) = top else {
            // serde-pickle deep-copies here; Python's pickler never memoizes a value twice.
            return Err(self.malformed("PUT of a memo reference"));
        };
        if self.memo.contains_key(&id) {
            return Err(self.malformed(format!("memo {id} set twice")));
        }
        self.memo.insert(
            id,
            Memo {
                shape,
                referenced: false,
            },
        );
        self.stack.push(Slot::Memo(id));
        Ok(())
    }

    /// GET: pushes a reference to memo slot `id`, which decoding will copy in full.
    fn get(&mut self, id: u32) -> Result<(), PickleError> {
        let Some(memo) = self.memo.get_mut(&id) else {
            return Err(self.malformed(format!("memo {id} is not set")));
        };
        memo.referenced = true;
        let size = memo.shape.size;
        self.spend(size)?;
        self.stack.push(Slot::Memo(id));
        Ok(())
    }

    /// REDUCE: calls the global under the argument tuple. Only [`BUILTINS`] get here.
    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let args = self.shape(args)?;
        let Kind::Builtin(builtin) = self.shape(callable)?.kind else {
            return Err(self.malformed("REDUCE of something that is not a global"));
        };
        if args.kind != Kind::Tuple {
            return Err(self.malformed("REDUCE with arguments that are not a tuple"));
        }
        // serde-pickle copies the arguments out of the memo, then builds from them: the result
        // is no larger and no deeper than the argument tuple.
        let kind = match builtin {
            Builtin::Set => Kind::Set,
            Builtin::FrozenSet => Kind::FrozenSet,
            Builtin::List => Kind::List,
            Builtin::ByteArray | Builtin::Int | Builtin::Encode => Kind::Scalar,
        };
        let result = Shape { kind, ..args };
        self.no_floats_in_sets(&result)?;
        self.push(result)
    }

    fn builtin(&self, module: &[u8], name: &[u8], op: &str) -> Result<Builtin, PickleError> {
        let found = BUILTINS
            .iter()
            .find(|(m, n)| m.as_bytes() == module && n.as_bytes() == name);
        match found.map(|&(_, n)| n) {
            Some("set") => Ok(Builtin::Set),
            Some("frozenset") => Ok(Builtin::FrozenSet),
            Some("list") => Ok(Builtin::List),
            Some("bytearray") => Ok(Builtin::ByteArray),
            Some("int") => Ok(Builtin::Int),
            Some(_) => Ok(Builtin::Encode),
            None => Err(self.not_data(format!(
                "{op} {}.{} (a class or function reference)",
                String::from_utf8_lossy(module),
                String::from_utf8_lossy(name)
            ))),
        }
    }

    // --- errors ---

    fn not_data(&self, what: String) -> PickleError {
        PickleError::NotData { what, at: self.at }
    }

    fn too_complex(&self, what: String) -> PickleError {
        PickleError::TooComplex { what, at: self.at }
    }

    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            what: what.into(),
            at: self.at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// From a LogRecord dict to a Record.
// ---------------------------------------------------------------------------------------------

fn to_record(dict: BTreeMap<HashableValue, Value>) -> Record<'static> {
    let mut record = Record::default();
    let mut levelno = false;
    let mut levelname = None;
    let mut msg = None;
    let mut message = None;
    let mut filename = None;
    let mut exc_text = None;
    let mut stack_info = None;
    for (key, value) in dict {
        let key = match key {
            HashableValue::String(s) => s,
            HashableValue::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            other => repr_of(&other.into_value()),
        };
        let rest = match (key.as_str(), value) {
            ("created", Value::F64(s)) => {
                record.timestamp_ns = seconds_to_ns(s);
                None
            }
            ("created", Value::I64(s)) => {
                record.timestamp_ns = seconds_to_ns(s as f64);
                None
            }
            ("levelno", Value::I64(n)) => {
                record.level = Level::from_python(n);
                levelno = true;
                None
            }
            ("levelname", Value::String(s)) => {
                levelname = Some(s);
                None
            }
            ("msg", value) => {
                msg = Some(text(value));
                None
            }
            ("message", Value::String(s)) => {
                message = Some(s);
                None
            }
            ("name", Value::String(s)) => set(&mut record.logger, s),
            ("pathname", Value::String(s)) => set(&mut record.file, s),
            ("filename", Value::String(s)) => {
                filename = Some(s);
                None
            }
            ("module", Value::String(s)) => set(&mut record.module, s),
            ("funcName", Value::String(s)) => set(&mut record.function, s),
            ("processName", Value::String(s)) => set(&mut record.process_name, s),
            ("threadName", Value::String(s)) => set(&mut record.thread_name, s),
            ("lineno", Value::I64(n)) => set_int(&mut record.line, n),
            ("process", Value::I64(n)) => set_int(&mut record.process_id, n),
            ("thread", Value::I64(n)) => set_int(&mut record.thread_id, n),
            ("exc_text", Value::String(s)) => {
                exc_text = Some(s);
                None
            }
            ("stack_info", Value::String(s)) => {
                stack_info = Some(s);
                None
            }
            // Redundant, or empty as SocketHandler sends them.
            ("msecs" | "relativeCreated", _)
            | ("args" | "exc_info" | "exc_text" | "stack_info" | "taskName", Value::None) => None,
            ("args", Value::Tuple(t)) if t.is_empty() => None,
            (_, value) => Some(value),
        };
        if let Some(value) = rest {
            record.fields.push((key.into(), typed(value)));
        }
    }
    if !levelno && let Some(level) = levelname.as_deref().and_then(super::jsonl::level_from_name) {
        record.level = level;
    }
    // `message` is `msg % args`, set by a Formatter. SocketHandler sends the formatted text as
    // `msg` and no `message`; another sender may send both, and the formatted one is the body.
    let body = match (msg, message) {
        (Some(msg), Some(message)) => {
            if msg != message {
                record.fields.push(("msg".into(), msg.into()));
            }
            message
        }
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => String::new(),
    };
    record.body = Body::Message(body.into());
    if let Some(name) = filename {
        let base = record.file.rsplit(['/', '\\']).next().unwrap_or("");
        if name != base {
            record.fields.push(("filename".into(), name.into()));
        }
    }
    record.stack_trace = match (exc_text, stack_info) {
        (Some(e), Some(s)) => format!("{e}\n{s}").into(),
        (Some(t), None) | (None, Some(t)) => t.into(),
        (None, None) => Cow::Borrowed(""),
    };
    record
}

/// Fills an empty text field; a second value (a key that only differs in being bytes, say)
/// goes back to become a field.
fn set(target: &mut Cow<'static, str>, value: String) -> Option<Value> {
    if target.is_empty() {
        *target = value.into();
        None
    } else {
        Some(Value::String(value))
    }
}

/// Sets a numeric field; a value out of its range (a negative pid, say) goes back to become a
/// field.
fn set_int<T: TryFrom<i64>>(target: &mut T, n: i64) -> Option<Value> {
    match T::try_from(n) {
        Ok(value) => {
            *target = value;
            None
        }
        Err(_) => Some(Value::I64(n)),
    }
}

/// `created` is float seconds; before 1970, NaN or past 2554 cannot be a record's time and reads
/// as 0 ("stamp on arrival").
fn seconds_to_ns(seconds: f64) -> u64 {
    if !(0.0..18_446_744_073.0).contains(&seconds) {
        return 0;
    }
    // Whole seconds and the fraction apart: f64 nanoseconds since 1970 would lose precision.
    let whole = seconds.trunc();
    let nanos = ((seconds - whole) * 1e9).round() as u64;
    (whole as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nanos)
}

/// A field value with its Python type mapped to the nearest JSON one: `None` is null, a bool,
/// an int and a float keep their type, a str is text; a list, tuple, set or frozenset is an
/// array and a dict an object (keys that are not str are written as their `repr()`). What JSON
/// cannot hold is text: bytes as their `repr()` (`b'\x00'`), `nan` and `inf` as Python spells
/// them; an int past 64 bits is a JSON number at the top level (its digits as a string past
/// [`MAX_JSON_DIGITS`](crate::record::MAX_JSON_DIGITS), which readers would refuse) and its
/// digits as a string inside a container (`serde_json` would round it to a float).
fn typed(value: Value) -> FieldValue<'static> {
    match value {
        Value::String(s) => FieldValue::Str(s.into()),
        Value::None => FieldValue::Null,
        Value::Bool(b) => FieldValue::Bool(b),
        Value::I64(n) => FieldValue::Int(n),
        Value::F64(f) if f.is_finite() => FieldValue::Float(f),
        Value::Int(n) => match crate::record::JsonText::integer(n.to_string()) {
            Some(json) => FieldValue::Json(json),
            None => FieldValue::Str(n.to_string().into()),
        },
        Value::F64(_) | Value::Bytes(_) => FieldValue::Str(repr_of(&value).into()),
        container => FieldValue::from_json(json(container)),
    }
}

/// [`typed`] inside a container. Recursion is bounded by [`MAX_DEPTH`], which [`check`]
/// enforced.
fn json(value: Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::I64(n) => Json::from(n),
        Value::F64(f) => match serde_json::Number::from_f64(f) {
            Some(n) => Json::Number(n),
            None => Json::String(repr_of(&value)),
        },
        Value::Int(n) => Json::String(n.to_string()),
        Value::String(s) => Json::String(s),
        Value::Bytes(_) => Json::String(repr_of(&value)),
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.into_iter().map(json).collect())
        }
        Value::Set(items) | Value::FrozenSet(items) => Json::Array(
            items
                .into_iter()
                .map(|item| json(item.into_value()))
                .collect(),
        ),
        Value::Dict(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        HashableValue::String(s) => s,
                        other => repr_of(&other.into_value()),
                    };
                    (key, json(v))
                })
                .collect(),
        ),
    }
}

/// A field value as text: a str as it is, anything else as Python's `repr()` would write it.
fn text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => repr_of(&other),
    }
}

fn repr_of(value: &Value) -> String {
    let mut out = String::new();
    repr(value, &mut out);
    out
}

/// Python's `repr()`, near enough: the same brackets, quotes and spellings. Recursion is bounded
/// by [`MAX_DEPTH`], which [`check`] enforced.
fn repr(value: &Value, out: &mut String) {
    match value {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::I64(n) => push(out, format_args!("{n}")),
        Value::Int(n) => push(out, format_args!("{n}")),
        Value::F64(f) => float(*f, out),
        Value::String(s) => str_repr(s, out),
        Value::Bytes(b) => bytes_repr(b, out),
        Value::List(items) => seq(items, "[", "]", repr, out),
        Value::Tuple(items) => seq(items, "(", tuple_close(items.len()), repr, out),
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => seq(items, "{", "}", hashable, out),
        Value::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
        Value::FrozenSet(items) => seq(items, "frozenset({", "})", hashable, out),
        Value::Dict(map) => seq(
            map,
            "{",
            "}",
            |(k, v), out| {
                hashable(k, out);
                out.push_str(": ");
                repr(v, out);
            },
            out,
        ),
    }
}

/// [`repr`] of a dict key or set element.
fn hashable(value: &HashableValue, out: &mut String) {
    match value {
        HashableValue::None => out.push_str("None"),
        HashableValue::Bool(true) => out.push_str("True"),
        HashableValue::Bool(false) => out.push_str("False"),
        HashableValue::I64(n) => push(out, format_args!("{n}")),
        HashableValue::Int(n) => push(out, format_args!("{n}")),
        HashableValue::F64(f) => float(*f, out),
        HashableValue::String(s) => str_repr(s, out),
        HashableValue::Bytes(b) => bytes_repr(b, out),
        HashableValue::Tuple(items) => seq(items, "(", tuple_close(items.len()), hashable, out),
        HashableValue::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
        HashableValue::FrozenSet(items) => seq(items, "frozenset({", "})", hashable, out),
    }
}

/// `items` between `open` and `close`, each written by `item`, separated by `, `.
fn seq<I: IntoIterator>(
    items: I,
    open: &str,
    close: &str,
    mut item: impl FnMut(I::Item, &mut String),
    out: &mut String,
) {
    out.push_str(open);
    for (i, element) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item(element, out);
    }
    out.push_str(close);
}

/// A one-element tuple is written `(x,)`.
fn tuple_close(len: usize) -> &'static str {
    if len == 1 { ",)" } else { ")" }
}

fn push(out: &mut String, args: fmt::Arguments<'_>) {
    out.write_fmt(args)
        .expect("writing to a String cannot fail");
}

/// Python spells floats `1.0`, `1e+16`, `1e-07`, `nan`, `inf`; Rust's `{:?}` is the same
/// shortest round-trip form, switching to an exponent at the same points, but writes the
/// exponent bare (`1e16`, `1e-7`) and the non-finite values in its own way.
fn float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        let s = format!("{f:?}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(digits) => ('-', digits),
                    None => ('+', exp),
                };
                push(out, format_args!("{mantissa}e{sign}{digits:0>2}"));
            }
            None => out.push_str(&s),
        }
    }
}

fn str_repr(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                push(out, format_args!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn bytes_repr(b: &[u8], out: &mut String) {
    out.push_str("b'");
    for &byte in b {
        match byte {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => push(out, format_args!("\\x{byte:02x}")),
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{self, Frame};

    /// A fixture as SocketHandler sent it, cut by the shared length-prefix framer.
    fn framed(bytes: &[u8]) -> Record<'static> {
        let Ok(Frame::Complete { payload, consumed }) = frame::decode(bytes, 1 << 20) else {
            panic!("a whole frame")
        };
        assert_eq!(consumed, bytes.len());
        assert!(matches!(payload[0], b'}' | 0x80), "{:x}", payload[0]);
        decode_record(payload).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A field's value in its text spelling (see `Value`'s `Display`).
    fn field(r: &Record<'_>, key: &str) -> Option<String> {
        r.field(key).map(ToString::to_string)
    }

    /// The attributes `generate.py` pins on every record.
    fn assert_pinned(r: &Record<'_>) {
        // 1763771173.123456 as the nearest f64, whose fraction is 0.123456001...
        assert_eq!(r.timestamp_ns, 1_763_771_173_123_456_001);
        assert_eq!(r.logger, "app.billing");
        assert_eq!(r.file, "/srv/app/billing.py");
        assert_eq!(r.module, "billing");
        assert_eq!(r.line, 42);
        assert_eq!(r.function, "charge");
        assert_eq!(r.process_id, 4242);
        assert_eq!(r.process_name, "MainProcess");
        assert_eq!(r.thread_id, 140_245_123_456_789);
        assert_eq!(r.thread_name, "MainThread");
        assert!(!r.parse_error && !r.truncated);
    }

    #[test]
    fn socket_handler_record() {
        let r = framed(include_bytes!("../../tests/fixtures/pickle/info.pickle"));
        assert_pinned(&r);
        assert_eq!(r.level, Level::Info);
        assert_eq!(r.body, Body::Message("hello world".into()));
        assert_eq!(r.stack_trace, "");
        // Everything else was standard and redundant.
        assert!(r.fields.is_empty(), "{:?}", r.fields);
    }

    #[test]
    fn other_protocols_decode_the_same() {
        let one = framed(include_bytes!("../../tests/fixtures/pickle/info.pickle"));
        for bytes in [
            &include_bytes!("../../tests/fixtures/pickle/info-protocol2.pickle")[..],
            include_bytes!("../../tests/fixtures/pickle/info-protocol5.pickle"),
        ] {
            assert_eq!(framed(bytes), one);
        }
    }

    #[test]
    fn unicode_and_newlines() {
        let r = framed(include_bytes!("../../tests/fixtures/pickle/unicode.pickle"));
        assert_pinned(&r);
        assert_eq!(r.level, Level::Warning);
        assert_eq!(
            r.body,
            Body::Message("unicode: é 😀 中文\nsecond line\ttab".into())
        );
    }

    #[test]
    fn exception_traceback() {
        let r = framed(include_bytes!(
            "../../tests/fixtures/pickle/exception.pickle"
        ));
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.body, Body::Message("division failed".into()));
        assert!(
            r.stack_trace
                .starts_with("Traceback (most recent call last):\n"),
            "{}",
            r.stack_trace
        );
        assert!(
            r.stack_trace
                .ends_with("ZeroDivisionError: division by zero")
        );
    }

    #[test]
    fn stack_info() {
        let r = framed(include_bytes!("../../tests/fixtures/pickle/stack.pickle"));
        assert_eq!(r.level, Level::Debug);
        assert!(
            r.stack_trace
                .starts_with("Stack (most recent call last):\n")
        );
    }

    #[test]
    fn custom_level() {
        let r = framed(include_bytes!(
            "../../tests/fixtures/pickle/custom-level.pickle"
        ));
        assert_eq!(r.level, Level::Info); // 25 is between INFO and WARNING.
        assert_eq!(field(&r, "levelname").as_deref(), None);
    }

    #[test]
    fn extra_fields_keep_their_types() {
        let r = framed(include_bytes!("../../tests/fixtures/pickle/extra.pickle"));
        assert_pinned(&r);
        let json = |text| FieldValue::Json(crate::record::JsonText::parse(text).unwrap());
        let extras: Vec<(&str, &FieldValue<'_>)> =
            r.fields.iter().map(|(k, v)| (k.as_ref(), v)).collect();
        assert_eq!(
            extras,
            [
                (
                    "big",
                    &FieldValue::Json(
                        crate::record::JsonText::integer("1208925819614629174706176".into())
                            .unwrap()
                    )
                ),
                ("flag", &FieldValue::Bool(true)),
                ("ids", &json("[3]")),
                ("nested", &json(r#"{"k":[1,null]}"#)),
                ("nothing", &FieldValue::Null),
                ("ratio", &FieldValue::Float(0.25)),
                ("raw", &"b'\\x00\\xff\\''".into()),
                ("request", &"GET /x".into()),
                ("tags", &json(r#"["a","b"]"#)),
                ("user_id", &FieldValue::Int(42)),
            ]
        );
    }

    fn refused(payload: &[u8]) -> PickleError {
        match decode_record(payload) {
            Ok(r) => panic!("decoded {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn code_and_objects_are_refused_by_name() {
        for (bytes, found) in [
            (
                &include_bytes!("../../tests/fixtures/pickle/evil-reduce.bin")[..],
                "GLOBAL posix.system",
            ),
            (
                include_bytes!("../../tests/fixtures/pickle/evil-reduce-protocol4.bin"),
                "STACK_GLOBAL posix.system",
            ),
            (
                include_bytes!("../../tests/fixtures/pickle/instance-protocol0.bin"),
                "GLOBAL copy_reg._reconstructor",
            ),
            (
                include_bytes!("../../tests/fixtures/pickle/instance-protocol2.bin"),
                "GLOBAL __main__.Thing",
            ),
            (
                include_bytes!("../../tests/fixtures/pickle/class-reference.bin"),
                "GLOBAL logging.Logger",
            ),
            (
                include_bytes!("../../tests/fixtures/pickle/function-reference.bin"),
                "STACK_GLOBAL posix.getcwd",
            ),
            (b"cos\nsystem\n(S'echo pwned'\ntR.", "GLOBAL os.system"),
            (b"}(I1\nI2\ni__main__\nThing\n.", "INST"),
            (b"}(I1\n)ob.", "OBJ"),
            (b"})b.", "BUILD"),
            (b"}\x82\x01.", "EXT"),
            (b"}P1\n.", "PERSID"),
            (b"}2.", "DUP"),
        ] {
            let e = refused(bytes);
            assert!(matches!(e, PickleError::NotData { .. }), "{e:?}");
            assert!(e.to_string().contains(found), "{found}: {e}");
        }
    }

    #[test]
    fn builtins_that_are_data_are_allowed_but_not_uncalled() {
        let e = refused(b"c__builtin__\nset\n.");
        assert!(e.to_string().contains("uncalled global"), "{e}");
        let e = refused(b"}(S'k'\nc__builtin__\nset\nu.");
        assert!(e.to_string().contains("uncalled global"), "{e}");
        let r = decode_record(b"}(X\x01\x00\x00\x00kc__builtin__\nset\n(]tRu.").unwrap();
        assert_eq!(field(&r, "k").as_deref(), Some("[]"));
    }

    #[test]
    fn declared_lengths_past_the_end_are_refused_before_allocating() {
        for payload in [
            &b"X\xff\xff\xff\xffabc"[..],            // BINUNICODE
            b"B\xff\xff\xff\xff",                    // BINBYTES
            b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff", // BINBYTES8
            b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", // BINUNICODE8
            b"\x96\x00\x00\x00\x00\x01\x00\x00\x00", // BYTEARRAY8
            b"T\xff\xff\xff\x7f",                    // BINSTRING
            b"U\xff",                                // SHORT_BINSTRING
            b"\x8c\x05abc",                          // SHORT_BINUNICODE
            b"\x8a\x09\x01",                         // LONG1
            b"}",
            b"",
            b"cos\nsys",
        ] {
            assert_eq!(refused(payload), PickleError::Truncated, "{payload:?}");
        }
        assert!(matches!(
            refused(b"T\xff\xff\xff\xff"),
            PickleError::Malformed { .. }
        ));
        assert!(matches!(
            refused(b"\x8b\xff\xff\xff\x7f"),
            PickleError::TooComplex { .. }
        ));
    }

    /// 1 MiB of nesting of each kind: refused at the 65th level, long before anything recurses.
    #[test]
    fn deep_nesting_is_refused() {
        const N: usize = 1 << 20;
        let nested = |open: &[u8], close: &[u8]| {
            let mut p = b"}".to_vec();
            for _ in 0..N / (open.len() + close.len()) {
                p.extend_from_slice(open);
            }
            for _ in 0..N / (open.len() + close.len()) {
                p.extend_from_slice(close);
            }
            p.push(b'.');
            p
        };
        for payload in [
            nested(b"]", b"a"),                         // lists in lists
            nested(b"K\x01}", b"s"),                    // dicts in dicts
            nested(b"(", b"t"),                         // tuples by MARK
            nested(b"(", b"l"),                         // lists by MARK
            [b")".as_slice(), &vec![0x85; N]].concat(), // TUPLE1 of TUPLE1 of ...
            vec![b'('; N],
        ] {
            let e = refused(&payload);
            assert!(matches!(e, PickleError::TooComplex { .. }), "{e}");
            assert!(e.to_string().contains("64"), "{e}");
        }
        // 64 deep is fine.
        let mut ok = b"}(X\x01\x00\x00\x00k".to_vec();
        ok.extend([b']'; 63]);
        ok.extend([b'a'; 62]);
        ok.extend(b"u.");
        let r = decode_record(&ok).unwrap();
        assert_eq!(field(&r, "k").as_deref().map(str::len), Some(2 * 63));
    }

    /// A list of two references to a list of two references to ...: 60 levels would be 2^60
    /// elements once serde-pickle copies each reference.
    #[test]
    fn memo_expansion_is_bounded() {
        let mut p = b"}(X\x01\x00\x00\x00k]r\x00\x00\x00\x00".to_vec();
        for i in 0u32..60 {
            p.extend(b"](j");
            p.extend(i.to_le_bytes());
            p.push(b'j');
            p.extend(i.to_le_bytes());
            p.extend(b"er");
            p.extend((i + 1).to_le_bytes());
        }
        p.extend(b"u.");
        let e = refused(&p);
        assert!(matches!(e, PickleError::TooComplex { .. }), "{e}");
        assert!(e.to_string().contains("expands"), "{e}");
        // Flat works too: a list of 250,000 references to a 500 kB string is a 1 MB pickle
        // that serde-pickle would expand to 125 GB.
        let mut p = b"}(X\x01\x00\x00\x00kX\x20\xa1\x07\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 500_000));
        p.extend(b"q\x00](");
        p.extend(b"h\x00".repeat(250_000));
        p.extend(b"eu.");
        assert!(matches!(refused(&p), PickleError::TooComplex { .. }));
        // A few references are fine: the same string as two attributes.
        let r =
            decode_record(b"}(X\x01\x00\x00\x00aX\x02\x00\x00\x00hiq\x01X\x01\x00\x00\x00bh\x01u.")
                .unwrap();
        assert_eq!(
            r.fields,
            vec![("a".into(), "hi".into()), ("b".into(), "hi".into())]
        );
    }

    /// `{1, 2.0, nan}` and friends: serde-pickle's sort of set elements would panic.
    #[test]
    fn sets_of_floats_are_refused() {
        let nan = b"G\x7f\xf8\x00\x00\x00\x00\x00\x00";
        let half = b"G\x3f\xe0\x00\x00\x00\x00\x00\x00";
        let mut items = Vec::new();
        for i in 0..20u8 {
            items.extend(if i % 3 == 0 { &nan[..] } else { &half[..] });
            items.extend([b'K', i]);
        }
        let wrap = |open: &[u8], close: &[u8]| {
            [&b"}(X\x01\x00\x00\x00k"[..], open, &items, close, b"u."].concat()
        };
        for payload in [
            wrap(b"\x8f(", b"\x90"),                 // EMPTY_SET, ADDITEMS
            wrap(b"(", b"\x91"),                     // FROZENSET
            wrap(b"c__builtin__\nset\n(](", b"etR"), // set([...]) as protocol 1 writes it
            wrap(b"\x8f((", b"t\x90"),               // a float inside a tuple inside a set
        ] {
            let e = refused(&payload);
            assert!(matches!(e, PickleError::Unsupported { .. }), "{e}");
        }
        // Floats elsewhere are fine.
        let r = decode_record(&wrap(b"(", b"l")).unwrap();
        assert!(
            field(&r, "k")
                .as_deref()
                .is_some_and(|v| v.starts_with(r#"["nan",0,0.5,1"#))
        );
    }

    #[test]
    fn recursive_structures_are_refused() {
        // l = []; l.append(l)
        let e = refused(b"}(X\x01\x00\x00\x00k]q\x00h\x00au.");
        assert!(e.to_string().contains("recursive"), "{e}");
    }

    #[test]
    fn huge_memo_indices_cost_nothing() {
        let mut p = b"}(".to_vec();
        for i in 0..1000u32 {
            p.extend(b"X\x01\x00\x00\x00k");
            p.push(b'r');
            p.extend((u32::MAX - i).to_le_bytes());
            p.extend(b"K\x07");
        }
        p.extend(b"u.");
        let r = decode_record(&p).unwrap();
        assert_eq!(r.fields, vec![("k".into(), FieldValue::Int(7))]);
        // Reusing an index, or reading one never set, is malformed.
        assert!(matches!(
            refused(b"Nq\x01Nq\x01."),
            PickleError::Malformed { .. }
        ));
        assert!(matches!(refused(b"h\x05."), PickleError::Malformed { .. }));
    }

    #[test]
    fn marks_and_values_do_not_amplify() {
        // Half a million MARK/POP_MARK pairs: each MARK is a 5 KiB allocation in serde-pickle,
        // freed again at once.
        let mut p = b"(1".repeat(1 << 18);
        p.extend(b"}.");
        assert!(decode_record(&p).unwrap().fields.is_empty());
        // A million values on the stack, then dropped.
        let mut p = b"(".to_vec();
        p.extend(std::iter::repeat_n(b'N', 1 << 20));
        p.extend(b"1}.");
        assert!(decode_record(&p).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            &b"\x00\x00\x00\x10"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"\xff",
            b"0",
            b"1",
            b"a",
            b"s",
            b"t",
            b"R",
            b"N.trailing",
            b"NN\x93.",
            b"I99999999999999999999999\n.",
            b"F1.5.",
            b"\x80\x05\x95",
        ] {
            assert!(decode_record(garbage).is_err(), "{garbage:?}");
        }
        assert_eq!(refused(b"N."), PickleError::NotADict("None"));
        assert_eq!(refused(b"]."), PickleError::NotADict("a list"));
    }

    #[test]
    fn records_from_other_senders() {
        // A dict with unformatted msg and args, the formatted message, a levelname only, and
        // attributes of unexpected types.
        let p = pickle_of(&[
            ("msg", "Xhello %s"),
            ("args", "(Xworld"),
            ("message", "Xhello world"),
            ("levelname", "XWARN"),
            ("lineno", "X12"),
            ("filename", "Xother.py"),
            ("pathname", "X/a/b.py"),
        ]);
        let r = decode_record(&p).unwrap();
        assert_eq!(r.body, Body::Message("hello world".into()));
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.file, "/a/b.py");
        assert_eq!(r.line, 0);
        assert_eq!(field(&r, "msg").as_deref(), Some("hello %s"));
        assert_eq!(field(&r, "args").as_deref(), Some(r#"["world"]"#));
        assert_eq!(field(&r, "lineno").as_deref(), Some("12"));
        assert_eq!(field(&r, "filename").as_deref(), Some("other.py"));
    }

    /// A protocol-1 dict pickle from (key, value) pairs; a value is `X` + a str, or `(X` + a
    /// str for a one-element tuple.
    fn pickle_of(pairs: &[(&str, &str)]) -> Vec<u8> {
        fn str_op(s: &str, out: &mut Vec<u8>) {
            out.push(b'X');
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        }
        let mut p = b"}(".to_vec();
        for (k, v) in pairs {
            str_op(k, &mut p);
            if let Some(s) = v.strip_prefix("(X") {
                p.push(b'(');
                str_op(s, &mut p);
                p.push(b't');
            } else {
                str_op(&v[1..], &mut p);
            }
        }
        p.extend(b"u.");
        p
    }

    #[test]
    fn float_and_str_reprs() {
        let cases = [
            (1.0, "1.0"),
            (0.25, "0.25"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (f, s) in cases {
            let mut out = String::new();
            float(f, &mut out);
            assert_eq!(out, s);
        }
        let mut out = String::new();
        str_repr("it's\\\n\x01é", &mut out);
        assert_eq!(out, r"'it\'s\\\n\x01é'");
    }

    #[test]
    fn created_to_nanoseconds() {
        assert_eq!(seconds_to_ns(1.5), 1_500_000_000);
        assert_eq!(seconds_to_ns(-1.0), 0);
        assert_eq!(seconds_to_ns(f64::NAN), 0);
        assert_eq!(seconds_to_ns(1e20), 0);
    }
}
