package client

// Integration with the standard library's `log` package (every Go version); the `log/slog`
// handler is in slog.go, built only by Go 1.21 and later.

import (
	"io"
	"strings"
	"time"
)

// Writer returns an io.Writer for log.New or log.SetOutput: each Write (one log call) becomes
// one record at level, its trailing newline removed. Use flag 0 (no date prefix): the record
// carries its own time.
func (c *Client) Writer(level Level) io.Writer {
	return levelWriter{c: c, level: level}
}

type levelWriter struct {
	c     *Client
	level Level
}

func (w levelWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	if err := w.c.Send(Record{Time: time.Now(), Level: w.level, Message: msg}); err != nil {
		return 0, err
	}
	return len(p), nil
}
