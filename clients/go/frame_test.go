package client

// The encoder and decoder checked against bytes the Rust encoder made: tests/client_go.rs
// writes them to the file named by LOGMILL_FIXTURES (records and hellos with what they hold,
// server frames with what they mean). Without it, only the tests that need no fixture run.

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

type fixtures struct {
	Hellos []struct {
		App, Instance, Token string
		WantAcks             bool `json:"wantAcks"`
		Hex                  string
	} `json:"hellos"`
	Records []struct {
		Record Record
		Hex    string
	} `json:"records"`
	Server []struct {
		Hex     string
		Ack     *Ack
		Error   *ServerError
		Welcome *Welcome
	} `json:"server"`
}

func loadFixtures(t *testing.T) fixtures {
	path := os.Getenv("LOGMILL_FIXTURES")
	if path == "" {
		t.Skip("LOGMILL_FIXTURES not set: run through `cargo test --test client_go`")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f fixtures
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Hellos) == 0 || len(f.Records) == 0 || len(f.Server) == 0 {
		t.Fatalf("empty fixtures: %s", b)
	}
	return f
}

func TestFramesMatchTheRustEncoder(t *testing.T) {
	f := loadFixtures(t)
	for i, h := range f.Hellos {
		got := hex.EncodeToString(EncodeHello(h.App, h.Instance, h.Token, h.WantAcks))
		if got != h.Hex {
			t.Errorf("hello %d:\n go   %s\n rust %s", i, got, h.Hex)
		}
	}
	for i, r := range f.Records {
		got := hex.EncodeToString(EncodeRecord(&r.Record))
		if got != r.Hex {
			t.Errorf("record %d %+v:\n go   %s\n rust %s", i, r.Record, got, r.Hex)
		}
	}
}

func TestServerFramesDecodeAtEverySplit(t *testing.T) {
	f := loadFixtures(t)
	var all []byte
	var want []ServerFrame
	for _, s := range f.Server {
		b, err := hex.DecodeString(s.Hex)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		want = append(want, ServerFrame{Ack: s.Ack, Err: s.Error, Welcome: s.Welcome})
	}
	for cut := 0; cut <= len(all); cut++ {
		var got []ServerFrame
		buf := append([]byte(nil), all[:cut]...)
		for _, more := range [][]byte{nil, all[cut:]} {
			buf = append(buf, more...)
			for {
				frame, n, err := DecodeServerFrame(buf)
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				if n == 0 {
					break
				}
				got = append(got, frame)
				buf = buf[n:]
			}
		}
		if !reflect.DeepEqual(got, want) || len(buf) != 0 {
			t.Fatalf("cut %d: got %+v, want %+v (%d bytes left)", cut, got, want, len(buf))
		}
	}
}

func TestHostileServerBytesAreErrorsNotPanics(t *testing.T) {
	frame := func(payload []byte) []byte {
		out := make([]byte, 4, 4+len(payload))
		binary.BigEndian.PutUint32(out, uint32(len(payload)))
		return append(out, payload...)
	}
	word := func(v uint64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, v)
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := map[string][]byte{
		"oversized prefix": {0, 1, 0, 1},
		"too short":        frame([]byte{1, 2, 3}),
		"two segments":     frame(cat(word(1), word(0))),
		"segment past end": frame(cat(word(5 << 32))),
		"root past end":    frame(cat(word(1<<32), word(uint64(100<<2)|1<<32))),
		"text past end": frame(cat(word(4<<32),
			word(0|1<<32|1<<48), word(1), word(0|1<<32|1<<48), // root → Error{code, message}
			word(uint64(1000<<2)|1|2<<32|5<<35))),
		"text without NUL": frame(cat(word(5<<32),
			word(1<<32|1<<48), word(1), word(1<<32|1<<48), word(6), word(1|2<<32|8<<35), word(0x4141414141414141))),
		"far pointer": frame(cat(word(1<<32), word(2))),
	}
	for name, b := range cases {
		if _, n, err := DecodeServerFrame(b); err == nil {
			t.Errorf("%s: accepted (%d bytes)", name, n)
		}
	}
	// And every prefix of every case, without a panic.
	for _, b := range cases {
		for i := range b {
			_, _, _ = DecodeServerFrame(b[:i]) // only the absence of a panic is checked
		}
	}
}

// BenchmarkEncodeRecord is the caller's encoding cost per record of 200 bytes.
func BenchmarkEncodeRecord(b *testing.B) {
	r := Record{Level: Info, Message: string(make([]byte, 200)), Logger: "bench"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		EncodeRecord(&r)
	}
}
