package client_test

import (
	"log"
	"os"
	"time"

	client "logmill.dev/client"
)

// The README's five lines, compiled by every `go test` (not run: it needs a server).
func Example() {
	c, err := client.New(client.Options{Addr: "127.0.0.1:4020", Token: os.Getenv("LOGMILL_TOKEN"), Instance: "web-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(5 * time.Second)
	c.Log(client.Info, "order paid", client.Field{Key: "order", Value: "A-17"})
	log.SetOutput(c.Writer(client.Info)) // or, on Go 1.21+: slog.New(client.NewSlogHandler(c, nil))
}
