//go:build go1.21

package client

// A log/slog handler (Go 1.21+; this file is left out by older toolchains, Debian's 1.19
// among them, so the rest of the package stays 1.19-compatible).

import (
	"context"
	"log/slog"
	"runtime"
)

// SlogHandler sends slog records through a Client: the message as the body, attributes as
// fields (groups joined with dots: `req.id`), the caller as file, line and function.
//
//	logger := slog.New(client.NewSlogHandler(c, nil))
type SlogHandler struct {
	c      *Client
	level  slog.Leveler
	attrs  []Field // from WithAttrs, group prefixes applied
	prefix string  // the open groups, "a.b."
}

// NewSlogHandler returns a handler for c; opts may be nil (level Info). Only opts.Level is
// used: the source is always recorded when the record has it.
func NewSlogHandler(c *Client, opts *slog.HandlerOptions) *SlogHandler {
	h := &SlogHandler{c: c, level: slog.LevelInfo}
	if opts != nil && opts.Level != nil {
		h.level = opts.Level
	}
	return h
}

// Enabled reports whether level reaches the handler's minimum.
func (h *SlogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// Handle sends the record; the error is the client's (a refused token, a full queue).
func (h *SlogHandler) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Time: r.Time, Level: fromSlog(r.Level), Message: r.Message}
	rec.Fields = make([]Field, 0, len(h.attrs)+r.NumAttrs())
	rec.Fields = append(rec.Fields, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		rec.Fields = appendAttr(rec.Fields, h.prefix, a)
		return true
	})
	if r.PC != 0 {
		frame, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		rec.File, rec.Line, rec.Function = frame.File, uint32(frame.Line), frame.Function
	}
	return h.c.Send(rec)
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *SlogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]Field(nil), h.attrs...)
	for _, a := range attrs {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

// WithGroup returns a handler whose later attributes are named `name.key`.
func (h *SlogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

func appendAttr(fields []Field, prefix string, a slog.Attr) []Field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			fields = appendAttr(fields, p, g)
		}
		return fields
	}
	return append(fields, Field{Key: prefix + a.Key, Value: a.Value.String()})
}

// fromSlog maps slog's levels (Debug -4, Info 0, Warn 4, Error 8) onto logmill's.
func fromSlog(l slog.Level) Level {
	switch {
	case l < slog.LevelDebug:
		return Trace
	case l < slog.LevelInfo:
		return Debug
	case l < slog.LevelWarn:
		return Info
	case l < slog.LevelError:
		return Warning
	case l < slog.LevelError+4:
		return Error
	default:
		return Critical
	}
}
