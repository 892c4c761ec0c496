package client

// The spool: records kept on disk while the server is unreachable (or the queue is full).
//
// Format: a directory of append-only files named by a 16-hex-digit sequence number,
// `0000000100000000.spool`, oldest first. Each holds whole wire frames exactly as sent: a
// 4-byte big-endian length, then a Cap'n Proto `record` message. Replay writes the bytes back
// to the socket without decoding them. A file is at most fileMax bytes; when the directory
// would pass its bound, whole files are dropped, oldest first, and counted. A frame cut short
// by a crash ends its file: the partial tail is dropped when the spool is opened.
//
// Only the client's mutex holder calls these methods.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxSpoolFrame bounds a frame read back from disk (the server's largest --max-frame is the
// most a client ever writes; anything longer is a damaged file).
const maxSpoolFrame = 64 << 20

// firstSeq leaves room below it for Close to write older records before the first file.
const firstSeq = 1 << 32

type spoolFile struct {
	seq     uint64
	bytes   int64
	records int
}

type spool struct {
	dir     string
	max     int64
	fileMax int64
	files   []spoolFile // oldest first
	cur     *os.File    // open for appending: the last file, or nil
	bytes   int64
	records int
}

func (s *spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x.spool", seq))
}

func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fileMax := max / 8
	if fileMax > 1<<20 {
		fileMax = 1 << 20
	}
	if fileMax < 4096 {
		fileMax = 4096
	}
	s := &spool{dir: dir, max: max, fileMax: fileMax}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".spool") || len(name) != 22 {
			continue
		}
		seq, err := strconv.ParseUint(name[:16], 16, 64)
		if err != nil {
			continue
		}
		frames, valid, err := readFrames(s.path(seq))
		if err != nil {
			return nil, err
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		if valid < info.Size() {
			if err := os.Truncate(s.path(seq), valid); err != nil {
				return nil, err
			}
		}
		s.files = append(s.files, spoolFile{seq: seq, bytes: valid, records: len(frames)})
		s.bytes += valid
		s.records += len(frames)
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].seq < s.files[j].seq })
	return s, nil
}

// readFrames reads a spool file's whole frames and how many bytes they take.
func readFrames(path string) (frames [][]byte, valid int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	off := 0
	for len(b)-off >= 4 {
		n := binary.BigEndian.Uint32(b[off:])
		if n < 8 || n > maxSpoolFrame || uint64(len(b)-off-4) < uint64(n) {
			break
		}
		frames = append(frames, b[off:off+4+int(n)])
		off += 4 + int(n)
	}
	return frames, int64(off), nil
}

// append writes one frame at the end, first dropping the oldest files as the bound needs;
// it returns how many records were dropped.
func (s *spool) append(frame []byte) (dropped int, err error) {
	size := int64(len(frame))
	if size > s.max {
		return 0, fmt.Errorf("logmill: a record of %d bytes is over the spool bound", size)
	}
	for s.bytes+size > s.max && len(s.files) > 0 {
		n, err := s.dropOldest()
		dropped += n
		if err != nil {
			return dropped, err
		}
	}
	if s.cur == nil || s.files[len(s.files)-1].bytes+size > s.fileMax {
		if err := s.rotate(); err != nil {
			return dropped, err
		}
	}
	if _, err := s.cur.Write(frame); err != nil {
		return dropped, err
	}
	last := &s.files[len(s.files)-1]
	last.bytes += size
	last.records++
	s.bytes += size
	s.records++
	return dropped, nil
}

// rotate starts a new file after the last one.
func (s *spool) rotate() error {
	if s.cur != nil {
		if err := s.cur.Close(); err != nil {
			return err
		}
		s.cur = nil
	}
	seq := uint64(firstSeq)
	if len(s.files) > 0 {
		seq = s.files[len(s.files)-1].seq + 1
	}
	f, err := os.OpenFile(s.path(seq), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cur = f
	s.files = append(s.files, spoolFile{seq: seq})
	return nil
}

// dropOldest removes the oldest file and returns its record count. A file that cannot be
// removed is still forgotten (the bound holds for this run) and the error returned.
func (s *spool) dropOldest() (int, error) {
	f := s.files[0]
	var err error
	if len(s.files) == 1 && s.cur != nil {
		err = s.cur.Close()
		s.cur = nil
	}
	if rerr := os.Remove(s.path(f.seq)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = rerr
	}
	s.files = s.files[1:]
	s.bytes -= f.bytes
	s.records -= f.records
	return f.records, err
}

// takeOldest reads the oldest file's frames and removes the file. Once taken, the records
// live in memory only: a crash before they are acked loses them (see README).
func (s *spool) takeOldest() ([][]byte, error) {
	if len(s.files) == 0 {
		return nil, nil
	}
	if len(s.files) == 1 && s.cur != nil {
		if err := s.cur.Close(); err != nil {
			return nil, err
		}
		s.cur = nil
	}
	f := s.files[0]
	frames, _, err := readFrames(s.path(f.seq))
	if err != nil {
		return nil, err
	}
	if err := os.Remove(s.path(f.seq)); err != nil {
		return nil, err
	}
	s.files = s.files[1:]
	s.bytes -= f.bytes
	s.records -= f.records
	return frames, nil
}

// prepend writes frames into a new file before the first (Close: unacked records are older than
// anything spooled), then applies the bound.
func (s *spool) prepend(frames [][]byte) (dropped int, err error) {
	seq := uint64(firstSeq)
	if len(s.files) > 0 {
		seq = s.files[0].seq - 1
	}
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	if err := os.WriteFile(s.path(seq), b, 0o644); err != nil {
		return 0, err
	}
	s.files = append([]spoolFile{{seq: seq, bytes: int64(len(b)), records: len(frames)}}, s.files...)
	s.bytes += int64(len(b))
	s.records += len(frames)
	for s.bytes > s.max && len(s.files) > 1 {
		n, err := s.dropOldest()
		dropped += n
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

func (s *spool) close() error {
	if s.cur == nil {
		return nil
	}
	err := s.cur.Close()
	s.cur = nil
	return err
}
