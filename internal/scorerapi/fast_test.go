package scorerapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/wire"
)

// MustServeFast serves s on fasthttp on 127.0.0.1:0 until the test ends.
func MustServeFast(tb testing.TB, s *scorerapi.Scorer) string {
	tb.Helper()
	srv := scorerapi.NewServer("127.0.0.1:0", s.Handler(), discard)
	if err := srv.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close(context.Background()) })
	return srv.URL()
}

// A connection that never sends a request must not hold up a graceful close:
// fasthttp would wait for it until its read timeout.
func TestFastServerCloseDropsSilentConnections(t *testing.T) {
	s := scorerapi.NewServer("127.0.0.1:0", scorerapi.NewScorer(discard, scorerapi.NewServed("calling-score", fallback.CallingScore{})).Handler(), discard)
	s.ReadTimeout = time.Minute
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A request on another connection makes sure the server has accepted the
	// silent one too (the listener hands them out in order).
	if status, _ := post(t, s.URL()+"/v1/score", `{"features":[`+nums(39, "0.5")+`]}`); status != 200 {
		t.Fatalf("score: %d", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close with a silent connection open: %v", err)
	}
	if err := <-s.Done(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// Request line and headers over the read buffer get a clear 431 in the API's
// error shape, not fasthttp's plain text.
func TestFastServerRefusesOversizedHeadersClearly(t *testing.T) {
	url := MustServeFast(t, scorerapi.NewScorer(discard, scorerapi.NewServed("calling-score", fallback.CallingScore{})))
	req, _ := http.NewRequest("POST", url+"/v1/score", strings.NewReader(`{}`))
	req.Header.Set("X-Big", strings.Repeat("a", 20000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body wire.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || body.Error.Code != "too_large" {
		t.Fatalf("20 KB of headers: %d %+v (%v), want 431 too_large", resp.StatusCode, body, err)
	}
}

// A client still sending a body far over the limit gets its 413, and its body
// is read to the end rather than refused with a reset: closing a connection with
// unread data resets it, and the client may then lose the 413 to "connection
// reset by peer" (net/http's server lingers the same way).
func TestFastServerAnswersOversizedBodiesWithoutReset(t *testing.T) {
	s := newScorer(mustServed(t))
	s.MaxBodyBytes = 64 << 10
	u := MustServeFast(t, s)
	const size = 6 << 20 // more than the loopback buffers hold: the server must read it
	for _, path := range []string{"/v1/score", "/v2/models/calling-score/infer"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(u, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		wrote := make(chan error, 1)
		go func() {
			_, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, size)
			if err == nil {
				_, err = c.Write(bytes.Repeat([]byte(" "), size))
			}
			wrote <- err
		}()
		answer, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v (after %q)", path, err, answer)
		}
		if err := <-wrote; err != nil {
			t.Errorf("%s: sending the body: %v", path, err)
		}
		c.Close()
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 413 ")) || !bytes.Contains(answer, []byte("larger than 65536 bytes")) {
			t.Errorf("%s: answered %q, want a 413 saying the body is too large", path, answer)
		}
	}
}
