package client

// The client's two goroutines and what they share.
//
//	caller ── Send ──> queue ──(sender: one Write per batch)──> server
//	            │                 inflight <──(reader: acks)──────┘
//	            └──> spool dir (server unreachable, or queue full) ──(refill when back)──> queue
//
// Every record is encoded once, in Send, on the caller's goroutine, into its own `record`
// frame; from then on it is bytes: queued, written, kept until acked, resent after a reconnect,
// or appended to the spool as is. Batching happens in the sender: it takes every frame queued
// (up to MaxWriteBytes) and writes them with one Write call, so a busy caller gets few large
// writes and an idle one gets each record sent at once, with no timer.

import (
	"errors"
	"fmt"
	"log"
	"math/rand"
	"net"
	"sync"
	"time"
)

// FullPolicy says what Send does when the in-memory queue is full and there is no spool.
type FullPolicy int

const (
	// Block waits up to Options.BlockTimeout for room, then drops the record (counted) and
	// returns ErrQueueFull.
	Block FullPolicy = iota
	// Drop drops the record at once (counted) and returns ErrQueueFull.
	Drop
)

// Options configure a Client. Only Addr is required; the zero value of every other field
// means its default.
type Options struct {
	Addr     string // host:port of logmill's native port
	App      string // application name (a token's app wins over it)
	Instance string // this process among the app's (host, pod, worker)
	Token    string // `logmill token issue --app NAME`; refused → Unauthorized, final

	QueueSize    int           // records in memory (queued and unacked); default 10000
	WhenFull     FullPolicy    // without a spool: Block (default) or Drop
	BlockTimeout time.Duration // Block's wait; default 1s

	SpoolDir      string // where records go while the server is unreachable; "" = none
	SpoolMaxBytes int64  // the spool's bound; oldest records dropped beyond it; default 64 MiB

	MaxWriteBytes int           // frames per write, in bytes; default 256 KiB
	DialTimeout   time.Duration // connect + hello + welcome; default 5s
	WriteTimeout  time.Duration // one write; default 10s
	BackoffMin    time.Duration // first reconnect delay; default 100ms
	BackoffMax    time.Duration // cap of the doubling delay; default 5s
	KeepAlive     time.Duration // TCP keepalive period; default 15s

	// Logf receives the client's warnings (drops, lost connections). Default: log.Printf.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = 64 << 20
	}
	if o.MaxWriteBytes <= 0 {
		o.MaxWriteBytes = 256 << 10
	}
	set(&o.BlockTimeout, time.Second)
	set(&o.DialTimeout, 5*time.Second)
	set(&o.WriteTimeout, 10*time.Second)
	set(&o.BackoffMin, 100*time.Millisecond)
	set(&o.BackoffMax, 5*time.Second)
	set(&o.KeepAlive, 15*time.Second)
	if o.Logf == nil {
		o.Logf = log.Printf
	}
}

// Errors returned to the caller.
var (
	ErrQueueFull = errors.New("logmill: queue full, record dropped")
	ErrClosed    = errors.New("logmill: client closed")
	ErrTimeout   = errors.New("logmill: timed out before every record was acked")
	ErrTooLarge  = errors.New("logmill: record larger than the server's largest frame")
)

// Stats are the client's counters since New.
type Stats struct {
	Queued   uint64 // records accepted into memory by Send
	Spooled  uint64 // records written to the spool
	Sent     uint64 // record frames written to a socket (resends included)
	Acked    uint64 // records the server acked
	Resent   uint64 // records put back in the queue after a lost connection
	Dropped  uint64 // records lost: queue full without a spool, or the spool bound
	Connects uint64 // connections welcomed
}

// Client sends records to one logmill server. Safe for concurrent use.
type Client struct {
	opts  Options
	mu    sync.Mutex
	cond  *sync.Cond
	queue [][]byte // frames not written on the current connection, oldest first
	// inflight holds frames written on the current connection and not yet acked, oldest first;
	// connAcked is the cumulative ack count of that connection.
	inflight  [][]byte
	connAcked uint64
	online    bool
	broken    bool // the current connection failed; the sender reconnects
	maxFrame  uint32
	spool     *spool
	spilling  bool  // new records go to the spool until it is drained (keeps the order)
	fatal     error // a refused token: final
	closing   bool
	stats     Stats
	wake      chan struct{} // closed by Close: ends a backoff sleep
	done      chan struct{} // closed when the sender goroutine returns
	conn      net.Conn
}

// New starts a client; it connects in the background, so a server that is down is not an
// error here (records queue, then spool). Errors: only a spool directory that cannot be used.
func New(opts Options) (*Client, error) {
	opts.defaults()
	c := &Client{
		opts:     opts,
		maxFrame: 1 << 20,
		wake:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	if opts.SpoolDir != "" {
		s, err := openSpool(opts.SpoolDir, opts.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		c.spool = s
		// Records left by an earlier run are older than anything sent now.
		c.spilling = s.records > 0
	}
	go c.run()
	return c, nil
}

// Log sends a record with a plain message body.
func (c *Client) Log(level Level, msg string, fields ...Field) error {
	return c.Send(Record{Time: time.Now(), Level: level, Message: msg, Fields: fields})
}

// Send encodes r and queues it for the background sender; it never waits on the network.
// With a spool, a record that finds the server unreachable or the queue full is appended to
// the spool. Without one, WhenFull decides. Errors: the server's refusal of the token (final),
// ErrClosed, ErrTooLarge, ErrQueueFull, or a spool write error.
func (c *Client) Send(r Record) error {
	frame := EncodeRecord(&r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fatal != nil {
		return c.fatal
	}
	if c.closing {
		return ErrClosed
	}
	if uint64(len(frame)-4) > uint64(c.maxFrame) {
		return ErrTooLarge
	}
	if c.spool != nil && (c.spilling || c.heldLocked() >= c.opts.QueueSize) {
		c.spilling = true
		return c.spoolLocked(frame)
	}
	if c.heldLocked() >= c.opts.QueueSize {
		if err := c.waitRoomLocked(); err != nil {
			return err
		}
	}
	// Only the sender waits for records, and only on an empty queue: one wake-up per batch,
	// not one per record.
	if len(c.queue) == 0 {
		c.cond.Broadcast()
	}
	c.queue = append(c.queue, frame)
	c.stats.Queued++
	return nil
}

func (c *Client) heldLocked() int { return len(c.queue) + len(c.inflight) }

func (c *Client) spoolLocked(frame []byte) error {
	dropped, err := c.spool.append(frame)
	if err != nil {
		return err
	}
	c.stats.Spooled++
	if dropped > 0 {
		c.stats.Dropped += uint64(dropped)
		c.opts.Logf("logmill: spool over %d bytes: dropped its %d oldest records (%d dropped in all)",
			c.opts.SpoolMaxBytes, dropped, c.stats.Dropped)
	}
	return nil
}

// waitRoomLocked applies WhenFull to a full queue without a spool.
func (c *Client) waitRoomLocked() error {
	if c.opts.WhenFull == Block {
		deadline := time.Now().Add(c.opts.BlockTimeout)
		timer := time.AfterFunc(c.opts.BlockTimeout, c.broadcast)
		defer timer.Stop()
		for c.heldLocked() >= c.opts.QueueSize && c.fatal == nil && !c.closing && time.Now().Before(deadline) {
			c.cond.Wait()
		}
		if c.fatal != nil {
			return c.fatal
		}
		if c.closing {
			return ErrClosed
		}
		if c.heldLocked() < c.opts.QueueSize {
			return nil
		}
	}
	c.stats.Dropped++
	if c.stats.Dropped == 1 || c.stats.Dropped%1000 == 0 {
		c.opts.Logf("logmill: queue of %d records full: dropped %d in all", c.opts.QueueSize, c.stats.Dropped)
	}
	return ErrQueueFull
}

func (c *Client) broadcast() {
	c.mu.Lock()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Stats returns a copy of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Err is the final error (a refused token), or nil.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// Flush waits until every record sent so far (spooled ones included) is acked, or timeout.
// Errors: the final error, or ErrTimeout saying how many records are still held.
func (c *Client) Flush(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, c.broadcast)
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.fatal != nil {
			return c.fatal
		}
		spooled := 0
		if c.spool != nil {
			spooled = c.spool.records
		}
		if c.heldLocked() == 0 && spooled == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w: %d in memory, %d spooled", ErrTimeout, c.heldLocked(), spooled)
		}
		c.cond.Wait()
	}
}

// Close flushes (up to timeout), stops the background goroutines and, with a spool, writes the
// records still unacked to it, ahead of the records spooled already, for the next run to send:
// a normal exit loses nothing. Errors: as Flush, or a spool write error.
func (c *Client) Close(timeout time.Duration) error {
	err := c.Flush(timeout)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closing = true
	close(c.wake)
	if c.conn != nil {
		c.conn.Close() // ends the reader; the sender sees closing
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	left := append(append([][]byte(nil), c.inflight...), c.queue...)
	c.inflight, c.queue = nil, nil
	if len(left) > 0 && c.spool != nil {
		dropped, serr := c.spool.prepend(left)
		c.stats.Dropped += uint64(dropped)
		if serr != nil {
			return serr
		}
		c.stats.Spooled += uint64(len(left))
	} else if len(left) > 0 {
		c.stats.Dropped += uint64(len(left))
	}
	if c.spool != nil {
		if serr := c.spool.close(); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// run is the sender goroutine: connect, serve the connection until it breaks, back off, again.
func (c *Client) run() {
	defer close(c.done)
	backoff := c.opts.BackoffMin
	for {
		c.mu.Lock()
		stop := c.closing || c.fatal != nil
		c.mu.Unlock()
		if stop {
			return
		}
		conn, welcome, err := c.dial()
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) && se.Kind == Unauthorized {
				c.mu.Lock()
				c.fatal = se
				c.cond.Broadcast()
				c.mu.Unlock()
				c.opts.Logf("%v", se)
				return
			}
			c.mu.Lock()
			if c.spool != nil {
				c.spilling = true
			}
			c.mu.Unlock()
			// Full jitter over the upper half: many clients of a restarted server spread out.
			sleep := backoff/2 + time.Duration(rand.Int63n(int64(backoff/2)+1))
			if backoff *= 2; backoff > c.opts.BackoffMax {
				backoff = c.opts.BackoffMax
			}
			select {
			case <-time.After(sleep):
			case <-c.wake:
			}
			continue
		}
		backoff = c.opts.BackoffMin
		if err := c.serve(conn, welcome); err != nil {
			c.opts.Logf("logmill: connection to %s lost: %v; reconnecting", c.opts.Addr, err)
		}
	}
}

// dial connects, says hello and waits for the welcome, all within DialTimeout.
func (c *Client) dial() (net.Conn, *Welcome, error) {
	d := net.Dialer{Timeout: c.opts.DialTimeout, KeepAlive: c.opts.KeepAlive}
	conn, err := d.Dial("tcp", c.opts.Addr)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *Welcome, error) {
		conn.Close()
		return nil, nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(c.opts.DialTimeout)); err != nil {
		return fail(err)
	}
	if _, err := conn.Write(EncodeHello(c.opts.App, c.opts.Instance, c.opts.Token, true)); err != nil {
		return fail(err)
	}
	var buf []byte
	chunk := make([]byte, 512)
	for {
		f, n, err := DecodeServerFrame(buf)
		if err != nil {
			return fail(err)
		}
		if n > 0 {
			switch {
			case f.Err != nil:
				return fail(f.Err)
			case f.Welcome == nil:
				return fail(fmt.Errorf("%w: an ack before the welcome", errMalformed))
			}
			if err := conn.SetDeadline(time.Time{}); err != nil {
				return fail(err)
			}
			return conn, f.Welcome, nil
		}
		k, err := conn.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if err != nil {
			return fail(err)
		}
	}
}

// serve writes queued frames on conn until it breaks or the client closes; then what was not
// acked goes back to the front of the queue, in order, for the next connection.
func (c *Client) serve(conn net.Conn, welcome *Welcome) error {
	c.mu.Lock()
	c.conn, c.online, c.broken, c.connAcked = conn, true, false, 0
	if welcome.MaxFrame > 0 {
		c.maxFrame = welcome.MaxFrame
	}
	c.stats.Connects++
	c.mu.Unlock()
	readErr := make(chan error, 1)
	go func() { readErr <- c.readAcks(conn) }()
	var out []byte
	var writeErr error
	for {
		c.mu.Lock()
		for {
			c.refillLocked()
			if len(c.queue) > 0 || c.broken || c.closing {
				break
			}
			c.cond.Wait()
		}
		if c.broken || c.closing {
			c.mu.Unlock()
			break
		}
		// The batch: as many queued frames as fit MaxWriteBytes (at least one). Only the slice
		// headers move under the lock; the bytes are copied after it (frames never change).
		n, size := 0, 0
		for n < len(c.queue) && (n == 0 || size+len(c.queue[n]) <= c.opts.MaxWriteBytes) {
			size += len(c.queue[n])
			n++
		}
		batch := c.queue[:n:n]
		c.inflight = append(c.inflight, batch...)
		c.queue = c.queue[n:]
		c.stats.Sent += uint64(n)
		c.mu.Unlock()
		out = out[:0]
		for _, f := range batch {
			out = append(out, f...)
		}
		if err := conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)); err != nil {
			writeErr = err
			break
		}
		if _, err := conn.Write(out); err != nil {
			writeErr = err
			break
		}
	}
	conn.Close()
	err := <-readErr
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn, c.online, c.broken = nil, false, false
	c.stats.Resent += uint64(len(c.inflight))
	c.queue = append(c.inflight, c.queue...)
	c.inflight = nil
	c.cond.Broadcast()
	var se *ServerError
	if errors.As(err, &se) && se.Kind == Unauthorized {
		c.fatal = se
		return se
	}
	if c.closing {
		return nil
	}
	if writeErr != nil {
		return writeErr
	}
	return err
}

// refillLocked moves the oldest spool file into the queue once the queue has room, and ends
// spilling when the spool is empty. Only while connected: offline, records stay on disk.
func (c *Client) refillLocked() {
	if c.spool == nil || !c.online || c.broken {
		return
	}
	if c.spool.records == 0 {
		c.spilling = false
		return
	}
	if c.heldLocked() >= c.opts.QueueSize/2 {
		return
	}
	frames, err := c.spool.takeOldest()
	if err != nil {
		c.opts.Logf("logmill: reading the spool: %v", err)
		return
	}
	c.queue = append(c.queue, frames...)
}

// readAcks reads server frames until the connection ends, retiring acked frames.
func (c *Client) readAcks(conn net.Conn) (err error) {
	defer func() {
		c.mu.Lock()
		c.broken = true
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	buf := make([]byte, 0, 8192)
	chunk := make([]byte, 4096)
	for {
		k, rerr := conn.Read(chunk)
		buf = append(buf, chunk[:k]...)
		off := 0
		for {
			f, n, err := DecodeServerFrame(buf[off:])
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			off += n
			switch {
			case f.Err != nil:
				return f.Err
			case f.Ack != nil:
				if err := c.acked(f.Ack.Count); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%w: a second welcome", errMalformed)
			}
		}
		buf = buf[:copy(buf, buf[off:])]
		if rerr != nil {
			return rerr
		}
	}
}

func (c *Client) acked(count uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if count < c.connAcked || count-c.connAcked > uint64(len(c.inflight)) {
		return fmt.Errorf("%w: ack of %d records after %d with %d in flight",
			errMalformed, count, c.connAcked, len(c.inflight))
	}
	k := int(count - c.connAcked)
	c.inflight = c.inflight[k:]
	c.connAcked = count
	c.stats.Acked += uint64(k)
	c.cond.Broadcast()
	return nil
}
