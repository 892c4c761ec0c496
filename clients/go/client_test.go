package client

// Tests against a real logmill server, run by tests/client_go.rs, which starts the server,
// passes its address in LOGMILL_ADDR and checks on disk what arrived. Run alone (`go test`)
// they skip. Where the Rust side must act mid-test (kill or start the server), the two meet
// through files in LOGMILL_SYNC: this side writes STEP, the Rust side acts and writes
// STEP.done.

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadline bounds every wait here; the Rust side's is longer.
const deadline = 30 * time.Second

func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s not set: run through `cargo test --test client_go`", name)
	}
	return v
}

// waitFor polls cond until it holds, failing the test after deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// step asks the Rust side to act and waits until it has.
func step(t *testing.T, name string) {
	t.Helper()
	if err := stepErr(env(t, "LOGMILL_SYNC"), name); err != nil {
		t.Fatal(err)
	}
}

// stepErr is step for another goroutine than the test's (which may not call t.Fatal).
func stepErr(dir, name string) error {
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
		return err
	}
	end := time.Now().Add(deadline)
	for {
		if _, err := os.Stat(filepath.Join(dir, name+".done")); err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("timed out waiting for %s.done", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// report leaves numbers for the Rust side to check.
func report(t *testing.T, s Stats) {
	t.Helper()
	fmt.Printf("STATS queued=%d spooled=%d sent=%d acked=%d resent=%d dropped=%d connects=%d\n",
		s.Queued, s.Spooled, s.Sent, s.Acked, s.Resent, s.Dropped, s.Connects)
}

// logs collects the client's warnings.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func TestDelivery(t *testing.T) {
	c, err := New(Options{Addr: env(t, "LOGMILL_ADDR"), App: "shop",
		Instance: "web-1", Token: env(t, "LOGMILL_TOKEN")})
	if err != nil {
		t.Fatal(err)
	}
	for l := Trace; l <= Emergency; l++ {
		if err := c.Log(l, "level "+l.String()); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Send(Record{Level: Warning, JSON: `{"order":"A-17","total":12.5}`, Logger: "shop.orders"}))
	must(c.Send(Record{Level: Error, Message: "card declined", Logger: "shop.pay",
		Fields: []Field{{"request_id", "r-42"}, {"user", "ada lovelace"}}}))
	must(c.Send(Record{Message: "unicode: héllo ✓ 日本語"}))
	log.New(c.Writer(Notice), "", 0).Print("through the log package")
	must(c.Close(deadline))
	report(t, c.Stats())
}

// TestRestart keeps sending while the Rust side kills the server (SIGKILL) and starts it
// again on the same port, then sends a last stretch: everything arrives, and duplicates come
// only from the unacked window at the kill (Stats.Resent).
func TestRestart(t *testing.T) {
	var l logs
	c, err := New(Options{Addr: env(t, "LOGMILL_ADDR"), App: "restart", Logf: l.logf,
		QueueSize: 1 << 20, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(k int) {
		for ; k > 0; k-- {
			if err := c.Log(Info, fmt.Sprintf("r-%06d", n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	send(2000)
	waitFor(t, "a first ack", func() bool { return c.Stats().Acked > 0 })
	syncDir := env(t, "LOGMILL_SYNC")
	restarted := make(chan error, 1)
	go func() { restarted <- stepErr(syncDir, "kill") }()
	// Records in bursts (20 a millisecond) for as long as the restart takes: some are in flight
	// when the server dies, some are queued while it is down.
	for waiting := true; waiting; {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		case <-time.After(time.Millisecond):
			send(20)
		}
	}
	send(2000)
	if err := c.Close(deadline); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	report(t, s)
	fmt.Printf("TOTAL %d\n", n)
	if s.Acked < uint64(n) || s.Connects < 2 {
		t.Fatalf("acked %d of %d, connects %d", s.Acked, n, s.Connects)
	}
	if !l.contains("reconnecting") {
		t.Fatalf("no warning about the lost connection: %q", l.lines)
	}
}

// spoolRun sends n records to a server that is down, has it started, and waits for all.
func spoolRun(t *testing.T, n int, maxBytes int64) (Stats, *logs) {
	l := &logs{}
	spoolDir := env(t, "LOGMILL_SPOOL")
	c, err := New(Options{Addr: env(t, "LOGMILL_ADDR"), App: "spool", SpoolDir: spoolDir,
		SpoolMaxBytes: maxBytes, Logf: l.logf,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to find the server down", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.spilling
	})
	for i := 0; i < n; i++ {
		if err := c.Log(Info, fmt.Sprintf("s-%05d %s", i, strings.Repeat("x", 64))); err != nil {
			t.Fatal(err)
		}
	}
	s := c.Stats()
	if s.Spooled != uint64(n) || s.Queued != 0 {
		t.Fatalf("spooled %d, queued %d of %d", s.Spooled, s.Queued, n)
	}
	var size int64
	files, err := os.ReadDir(spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		info, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		size += info.Size()
	}
	if size == 0 || size > maxBytes {
		t.Fatalf("spool holds %d bytes, bound %d", size, maxBytes)
	}
	step(t, "start")
	if err := c.Close(deadline); err != nil {
		t.Fatal(err)
	}
	s = c.Stats()
	report(t, s)
	left, err := os.ReadDir(spoolDir)
	if err != nil || len(left) != 0 {
		t.Fatalf("spool not drained: %v %v", left, err)
	}
	return s, l
}

func TestSpoolReplay(t *testing.T) {
	s, _ := spoolRun(t, 300, 64<<20)
	if s.Dropped != 0 || s.Acked != 300 {
		t.Fatalf("%+v", s)
	}
}

func TestSpoolBound(t *testing.T) {
	const n = 1000
	s, l := spoolRun(t, n, 16<<10)
	if s.Dropped == 0 || s.Acked != n-s.Dropped {
		t.Fatalf("%+v", s)
	}
	if !l.contains("dropped its") {
		t.Fatalf("no warning about the drop: %q", l.lines)
	}
}

func TestRefusedToken(t *testing.T) {
	var l logs
	c, err := New(Options{Addr: env(t, "LOGMILL_ADDR"), App: "shop", Token: "lm_not-a-token", Logf: l.logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Log(Info, "never stored"); err != nil && !isUnauthorized(err) {
		t.Fatal(err)
	}
	err = c.Flush(deadline)
	if !isUnauthorized(err) {
		t.Fatalf("Flush: %v", err)
	}
	if err := c.Log(Info, "after"); !isUnauthorized(err) {
		t.Fatalf("Send after the refusal: %v", err)
	}
	if err := c.Close(time.Second); !isUnauthorized(err) {
		t.Fatalf("Close: %v", err)
	}
	if s := c.Stats(); s.Connects != 0 {
		t.Fatalf("welcomed %d times", s.Connects)
	}
	fmt.Printf("REFUSED %v\n", err)
}

func isUnauthorized(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Kind == Unauthorized
}

// TestThroughput reports records/s of one goroutine logging LOGMILL_BENCH_N records of 200
// bytes, acks included (Close waits for the last).
func TestThroughput(t *testing.T) {
	addr := env(t, "LOGMILL_ADDR")
	n := 100000
	if v := os.Getenv("LOGMILL_BENCH_N"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Options{Addr: addr, App: "bench", QueueSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("b", 200)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := c.Send(Record{Level: Info, Message: body}); err != nil {
			t.Fatal(err)
		}
	}
	caller := time.Since(start)
	if err := c.Close(deadline); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	fmt.Printf("THROUGHPUT %d records of 200 bytes: %.0f records/s acked, caller %.0f ns/record\n",
		n, float64(n)/total.Seconds(), float64(caller.Nanoseconds())/float64(n))
}
