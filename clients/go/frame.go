// Package client is logmill's Go client: records go to a background goroutine that sends them
// over the native protocol (Cap'n Proto frames over TCP), keeps them until the server acks
// them, reconnects and resends after a lost connection, and spills to a local spool directory
// while the server is unreachable. Standard library only.
//
// This file holds the wire format, written by hand from schema/logmill.capnp: the encoder of
// the frames a client sends (hello, record) and the decoder of the frames a server answers
// (welcome, ack, error). It touches no socket. The layout follows the Rust encoder word for
// word, which the fixture test (frame_test.go) checks against bytes that encoder made.
package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Level is a record's severity, numbered as the schema's Level enum.
type Level uint16

// The levels of schema/logmill.capnp; the zero value is stored as Info.
const (
	Unspecified Level = iota
	Trace
	Debug
	Info
	Notice
	Warning
	Error
	Critical
	Alert
	Emergency
)

var levelNames = [...]string{"unspecified", "trace", "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func (l Level) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", uint16(l))
}

// Field is one key/value pair of a record; the order given is the order stored.
type Field struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Record is one log record. Message is the body, unless JSON is set: then the body is that
// text, which should hold a JSON object (the server stores one that does not parse as text,
// flagged). A zero Time lets the server stamp the record when it arrives.
type Record struct {
	Time        time.Time `json:"-"`
	TimestampNs uint64    `json:"timestampNs"` // used when Time is zero (fixtures)
	Level       Level     `json:"level"`
	Message     string    `json:"message"`
	JSON        string    `json:"json"`
	Logger      string    `json:"logger"`
	Host        string    `json:"host"`
	Service     string    `json:"service"`
	Module      string    `json:"module"`
	File        string    `json:"file"`
	Line        uint32    `json:"line"`
	Function    string    `json:"function"`
	ProcessID   uint32    `json:"processId"`
	ProcessName string    `json:"processName"`
	ThreadID    uint64    `json:"threadId"`
	ThreadName  string    `json:"threadName"`
	StackTrace  string    `json:"stackTrace"`
	Fields      []Field   `json:"fields"`
}

// Struct sizes (data words, pointers) from the schema, as the generated Rust code has them.
const (
	recordData, recordPtrs = 4, 11
	fieldData, fieldPtrs   = 0, 2
	helloData, helloPtrs   = 1, 3
	frameData, framePtrs   = 1, 1 // ClientFrame and ServerFrame
)

// ClientFrame union tags.
const (
	tagRecord = 0
	tagHello  = 2
)

// head is the room kept before the segment for the frame's length prefix and segment table,
// so that a frame is built in the one buffer it is sent from.
const head = 12

// segment builds one Cap'n Proto segment by bumping: every allocation goes at the end, in the
// order the Rust encoder makes them, so both write the same bytes. Word w is at b[head+8w:].
type segment struct{ b []byte }

func newSegment(capacity int) segment {
	return segment{b: make([]byte, head, head+capacity)}
}

// wordAt is the byte offset of word w.
func wordAt(w int) int { return head + w*8 }

func (s *segment) alloc(words int) int {
	at := (len(s.b) - head) / 8
	s.b = append(s.b, make([]byte, words*8)...) // compiled to a zeroed extension, no temporary
	return at
}

func (s *segment) put64(word int, v uint64) { binary.LittleEndian.PutUint64(s.b[wordAt(word):], v) }

// structPtr writes at word `at` a pointer to the struct at word `target`.
func (s *segment) structPtr(at, target, data, ptrs int) {
	off := uint32(int32(target-at-1) << 2)
	s.put64(at, uint64(off)|uint64(data)<<32|uint64(ptrs)<<48)
}

// listPtr writes at word `at` a list pointer: elem 2 is bytes, 7 is composite (count in words).
func (s *segment) listPtr(at, target int, elem uint64, count int) {
	off := uint32(int32(target-at-1)<<2) | 1
	s.put64(at, uint64(off)|elem<<32|uint64(count)<<35)
}

// text allocates s plus its NUL, padded to a word, and points word `at` to it.
func (s *segment) text(at int, t string) {
	words := (len(t) + 1 + 7) / 8
	target := s.alloc(words)
	copy(s.b[wordAt(target):], t)
	s.listPtr(at, target, 2, len(t)+1)
}

// frame fills in the head: a 4-byte big-endian length prefix, then the segment table of a
// one-segment message (count - 1, then the segment's size in words).
func (s *segment) frame() []byte {
	binary.BigEndian.PutUint32(s.b, uint32(len(s.b)-4))
	binary.LittleEndian.PutUint32(s.b[4:], 0)
	binary.LittleEndian.PutUint32(s.b[8:], uint32((len(s.b)-head)/8))
	return s.b
}

// EncodeHello returns the hello frame, length prefix included.
func EncodeHello(app, instance, token string, wantAcks bool) []byte {
	s := newSegment(8 * (1 + frameData + framePtrs + helloData + helloPtrs + 3))
	root := s.alloc(1)
	cf := s.alloc(frameData + framePtrs)
	s.structPtr(root, cf, frameData, framePtrs)
	binary.LittleEndian.PutUint16(s.b[wordAt(cf):], tagHello)
	h := s.alloc(helloData + helloPtrs)
	s.structPtr(cf+frameData, h, helloData, helloPtrs)
	s.text(h+1, app)
	s.text(h+2, instance)
	s.text(h+3, token)
	if wantAcks {
		s.b[wordAt(h)] |= 1
	}
	return s.frame()
}

// EncodeRecord returns one `record` frame, length prefix included. One frame per record is
// what lets the spool hold wire bytes and replay them without decoding.
func EncodeRecord(r *Record) []byte {
	// Sized for the common record (a body, a few short texts) so that it is one allocation.
	s := newSegment(8*(3+recordData+recordPtrs) + len(r.Message) + len(r.JSON) + 64)
	root := s.alloc(1)
	cf := s.alloc(frameData + framePtrs)
	s.structPtr(root, cf, frameData, framePtrs)
	// The tag of `record` is 0: nothing to write.
	rec := s.alloc(recordData + recordPtrs)
	s.structPtr(cf+frameData, rec, recordData, recordPtrs)
	fillRecord(&s, rec, r)
	return s.frame()
}

func fillRecord(s *segment, rec int, r *Record) {
	d := s.b[wordAt(rec):wordAt(rec+recordData)]
	ts := r.TimestampNs
	if !r.Time.IsZero() {
		ts = uint64(r.Time.UnixNano())
	}
	binary.LittleEndian.PutUint64(d[0:], ts)
	binary.LittleEndian.PutUint16(d[8:], uint16(r.Level))
	p := rec + recordData
	if r.JSON != "" {
		binary.LittleEndian.PutUint16(d[10:], 1)
		s.text(p, r.JSON)
	} else {
		s.text(p, r.Message)
	}
	opt := func(i int, t string) {
		if t != "" {
			s.text(p+i, t)
		}
	}
	opt(1, r.Logger)
	opt(2, r.Host)
	opt(3, r.Service)
	opt(4, r.Module)
	opt(5, r.File)
	opt(6, r.Function)
	opt(7, r.ProcessName)
	opt(8, r.ThreadName)
	opt(9, r.StackTrace)
	// s.b may have grown: write the numbers through fresh slices.
	binary.LittleEndian.PutUint32(s.b[wordAt(rec)+12:], r.Line)
	binary.LittleEndian.PutUint32(s.b[wordAt(rec)+16:], r.ProcessID)
	binary.LittleEndian.PutUint64(s.b[wordAt(rec)+24:], r.ThreadID)
	if len(r.Fields) > 0 {
		n := len(r.Fields)
		tag := s.alloc(1 + n*(fieldData+fieldPtrs))
		s.listPtr(p+10, tag, 7, n*(fieldData+fieldPtrs))
		s.put64(tag, uint64(uint32(n)<<2)|uint64(fieldData)<<32|uint64(fieldPtrs)<<48)
		for i, f := range r.Fields {
			e := tag + 1 + i*(fieldData+fieldPtrs)
			s.text(e, f.Key)
			s.text(e+1, f.Value)
		}
	}
}

// MaxServerFrame bounds a server frame's payload: acks, welcomes and error messages are all
// under 1 KiB, so a longer prefix means whatever answers is not logmill.
const MaxServerFrame = 64 * 1024

// ErrorKind is the schema's ErrorCode: why the server sent an error frame.
type ErrorKind uint16

// The server's error codes.
const (
	FrameTooLarge ErrorKind = iota
	Undecodable
	HelloNotFirst
	ShuttingDown
	SlowReader
	IdleTimeout
	Unauthorized
)

var kindNames = [...]string{"frameTooLarge", "undecodable", "helloNotFirst", "shuttingDown", "slowReader", "idleTimeout", "unauthorized"}

func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("errorCode(%d)", uint16(k))
}

// ServerError is an error frame from the server. An Unauthorized one is final: the client
// stops connecting and returns it from Send, Flush and Close.
type ServerError struct {
	Kind    ErrorKind
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("logmill server refused: %v: %s", e.Kind, e.Message)
}

// ServerFrame is a decoded server frame: exactly one of Welcome, Ack or Err is set.
type ServerFrame struct {
	Welcome *Welcome
	Ack     *Ack
	Err     *ServerError
}

// Welcome is the answer to a hello.
type Welcome struct {
	Server, Version string
	MaxFrame        uint32
}

// Ack says the server wrote Count records of this connection in all, the last as LastSeq.
type Ack struct{ Count, LastSeq uint64 }

// errMalformed is the cause of every decoding failure: the bytes are not a server frame.
var errMalformed = errors.New("malformed server frame")

// DecodeServerFrame takes one whole frame from the front of b. It returns the frame and the
// bytes consumed, or n == 0 and no error when b does not hold a whole frame yet. Every length
// and offset is checked before use: the bytes come from the network.
func DecodeServerFrame(b []byte) (f ServerFrame, n int, err error) {
	if len(b) < 4 {
		return f, 0, nil
	}
	size := binary.BigEndian.Uint32(b)
	if size > MaxServerFrame {
		return f, 0, fmt.Errorf("%w: length %d over %d", errMalformed, size, MaxServerFrame)
	}
	if uint64(len(b)) < 4+uint64(size) {
		return f, 0, nil
	}
	f, err = decodePayload(b[4 : 4+size])
	return f, 4 + int(size), err
}

// reader reads structs and texts from one segment.
type reader struct{ seg []byte }

func (r reader) word(i int) (uint64, error) {
	if i < 0 || (i+1)*8 > len(r.seg) {
		return 0, fmt.Errorf("%w: word %d outside the segment", errMalformed, i)
	}
	return binary.LittleEndian.Uint64(r.seg[i*8:]), nil
}

// strct is a struct's position: first data word, data words, pointer count.
type strct struct{ at, data, ptrs int }

func (r reader) structAt(ptrWord int) (strct, error) {
	p, err := r.word(ptrWord)
	if err != nil {
		return strct{}, err
	}
	if p == 0 {
		return strct{}, nil // null: every field reads as its default
	}
	if p&3 != 0 {
		return strct{}, fmt.Errorf("%w: not a struct pointer", errMalformed)
	}
	off := int(int32(uint32(p)) >> 2)
	s := strct{at: ptrWord + 1 + off, data: int(uint16(p >> 32)), ptrs: int(uint16(p >> 48))}
	if s.at < 0 || (s.at+s.data+s.ptrs)*8 > len(r.seg) {
		return strct{}, fmt.Errorf("%w: struct outside the segment", errMalformed)
	}
	return s, nil
}

func (r reader) u16(s strct, byteOff int) uint16 {
	if byteOff+2 > s.data*8 {
		return 0
	}
	return binary.LittleEndian.Uint16(r.seg[s.at*8+byteOff:])
}

func (r reader) u32(s strct, byteOff int) uint32 {
	if byteOff+4 > s.data*8 {
		return 0
	}
	return binary.LittleEndian.Uint32(r.seg[s.at*8+byteOff:])
}

func (r reader) u64(s strct, byteOff int) uint64 {
	if byteOff+8 > s.data*8 {
		return 0
	}
	return binary.LittleEndian.Uint64(r.seg[s.at*8+byteOff:])
}

func (r reader) ptr(s strct, i int) (strct, error) {
	if i >= s.ptrs {
		return strct{}, nil
	}
	return r.structAt(s.at + s.data + i)
}

func (r reader) text(s strct, i int) (string, error) {
	if i >= s.ptrs {
		return "", nil
	}
	at := s.at + s.data + i
	p, err := r.word(at)
	if err != nil || p == 0 {
		return "", err
	}
	if p&3 != 1 || (p>>32)&7 != 2 {
		return "", fmt.Errorf("%w: not a text pointer", errMalformed)
	}
	start := (at + 1 + int(int32(uint32(p))>>2)) * 8
	count := int(p >> 35)
	if start < 0 || count == 0 || start+count > len(r.seg) || r.seg[start+count-1] != 0 {
		return "", fmt.Errorf("%w: text outside the segment or without its NUL", errMalformed)
	}
	return string(r.seg[start : start+count-1]), nil
}

// decodePayload reads a one-segment message whose root is a ServerFrame. Server frames are a
// few words; a multi-segment one (far pointers) is refused as malformed.
func decodePayload(p []byte) (f ServerFrame, err error) {
	if len(p) < 8 {
		return f, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	if binary.LittleEndian.Uint32(p) != 0 {
		return f, fmt.Errorf("%w: more than one segment", errMalformed)
	}
	words := uint64(binary.LittleEndian.Uint32(p[4:]))
	if 8+words*8 > uint64(len(p)) {
		return f, fmt.Errorf("%w: segment of %d words in %d bytes", errMalformed, words, len(p))
	}
	r := reader{seg: p[8 : 8+words*8]}
	root, err := r.structAt(0)
	if err != nil {
		return f, err
	}
	body, err := r.ptr(root, 0)
	if err != nil {
		return f, err
	}
	switch tag := r.u16(root, 0); tag {
	case 0:
		f.Ack = &Ack{Count: r.u64(body, 0), LastSeq: r.u64(body, 8)}
	case 1:
		msg, err := r.text(body, 0)
		if err != nil {
			return f, err
		}
		f.Err = &ServerError{Kind: ErrorKind(r.u16(body, 0)), Message: msg}
	case 2:
		server, err := r.text(body, 0)
		if err != nil {
			return f, err
		}
		version, err := r.text(body, 1)
		if err != nil {
			return f, err
		}
		f.Welcome = &Welcome{Server: server, Version: version, MaxFrame: r.u32(body, 0)}
	default:
		return f, fmt.Errorf("%w: unknown ServerFrame tag %d", errMalformed, tag)
	}
	return f, nil
}
