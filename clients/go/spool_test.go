package client

// The spool alone, and Close with the server unreachable: no server needed.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func frameOf(i int) []byte {
	return EncodeRecord(&Record{Level: Info, Message: fmt.Sprintf("m-%04d", i)})
}

// spoolFrames reads every frame of the spool in dir, oldest first, as a new client would.
func spoolFrames(t *testing.T, dir string) [][]byte {
	t.Helper()
	s, err := openSpool(dir, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for s.records > 0 {
		frames, err := s.takeOldest()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, frames...)
	}
	return all
}

func TestSpoolKeepsOrderDropsOldestAndCutsATornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 8192) // files of 4096 bytes
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	const n = 400
	for i := 0; i < n; i++ {
		d, err := s.append(frameOf(i))
		if err != nil {
			t.Fatal(err)
		}
		dropped += d
		if s.bytes > 8192 {
			t.Fatalf("spool at %d bytes over its bound", s.bytes)
		}
	}
	if dropped == 0 || s.records != n-dropped {
		t.Fatalf("dropped %d, holds %d of %d", dropped, s.records, n)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a write leaves part of a frame at the end of the last file.
	last := s.path(s.files[len(s.files)-1].seq)
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(frameOf(n)[:10]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := spoolFrames(t, dir)
	if len(got) != n-dropped {
		t.Fatalf("read back %d frames, want %d", len(got), n-dropped)
	}
	for k, frame := range got {
		if want := frameOf(dropped + k); !bytes.Equal(frame, want) {
			t.Fatalf("frame %d is not record %d", k, dropped+k)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.spool")); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
}

func TestCloseSpoolsWhatIsNotAckedAheadOfTheSpool(t *testing.T) {
	dir := t.TempDir()
	var l logs
	// Port 1 on loopback: nothing listens, every connect is refused at once.
	c, err := New(Options{Addr: "127.0.0.1:1", SpoolDir: dir, Logf: l.logf})
	if err != nil {
		t.Fatal(err)
	}
	// Some of these may be queued in memory before the first connect fails, the rest spooled;
	// either way Close must leave all of them in the spool, in order.
	for i := 0; i < 50; i++ {
		if err := c.Send(Record{Level: Info, Message: fmt.Sprintf("m-%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Send(Record{Message: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	got := spoolFrames(t, dir)
	if len(got) != 50 {
		t.Fatalf("%d frames in the spool", len(got))
	}
	for i, frame := range got {
		if !bytes.Equal(frame, frameOf(i)) {
			t.Fatalf("frame %d is not record %d", i, i)
		}
	}
	if s := c.Stats(); s.Dropped != 0 || s.Connects != 0 {
		t.Fatalf("%+v", s)
	}
}

func TestWithoutASpoolAFullQueueDropsAndCounts(t *testing.T) {
	var l logs
	c, err := New(Options{Addr: "127.0.0.1:1", QueueSize: 10, WhenFull: Drop, Logf: l.logf})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 15; i++ {
		err := c.Log(Info, "x")
		if (i < 10) != (err == nil) || (err != nil && !errors.Is(err, ErrQueueFull)) {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if s := c.Stats(); s.Dropped != 5 || s.Queued != 10 {
		t.Fatalf("%+v", s)
	}
	if !l.contains("queue of 10 records full") {
		t.Fatalf("no warning: %q", l.lines)
	}
	if err := c.Close(10 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Close: %v", err)
	}
	if s := c.Stats(); s.Dropped != 15 {
		t.Fatalf("after Close: %+v", s)
	}
}
