package api

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// Idle keep-alive connections need no token: past the bound from one address
// a new one is closed at once, and one that closes gives its place back.
func TestConnectionsPerAddressAreBounded(t *testing.T) {
	s := NewServer("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), slog.New(slog.DiscardHandler))
	s.MaxConnsPerAddr = 10
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	addr := strings.TrimPrefix(s.URL(), "http://")
	// get opens a connection, asks once and keeps it open; ok says whether it
	// was answered.
	get := func() (net.Conn, bool) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return c, false
		}
		resp.Body.Close()
		return c, resp.StatusCode == http.StatusOK
	}
	var held []net.Conn
	answered := 0
	for range 15 {
		c, ok := get()
		held = append(held, c)
		if ok {
			answered++
		}
	}
	if answered != 10 {
		t.Fatalf("%d of 15 connections from one address answered, want the bound, 10", answered)
	}
	for _, c := range held {
		c.Close()
	}
	// The places come back once the server sees the connections close.
	for i := 0; ; i++ {
		c, ok := get()
		c.Close()
		if ok {
			break
		}
		if i > 1000 {
			t.Fatal("no connection answered after all of them closed")
		}
	}
}
