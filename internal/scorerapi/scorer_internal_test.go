package scorerapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/testutil"
)

func TestOverCapacityAnswersWithRetryAfter(t *testing.T) {
	s := NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), NewServed("calling-score", fallback.CallingScore{}))
	s.MaxInFlight, s.MaxQueue = 1, 0
	srv := NewServer("127.0.0.1:0", s.Handler(), s.Logger)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	body := `{"features":[` + strings.TrimSuffix(strings.Repeat("0.5,", 39), ",") + `]}`
	release, err := s.Admit(context.Background(), time.Second) // every turn taken
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL()+"/v1/score", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("with no turn free and no queue: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	s.MaxQueue = 10
	resp, err = http.Post(srv.URL()+"/v1/score", "application/json", strings.NewReader(`{"budget_ms":20,`+body[1:]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("queued past the budget: %d; want 503 with Retry-After", resp.StatusCode)
	}
	release()
	resp, err = http.Post(srv.URL()+"/v1/score", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with a turn free: %d", resp.StatusCode)
	}
}

// The binary infer route decodes rows into a pooled buffer that the next request
// reuses, so a shadow run must score a copy of the rows it was given. Production
// and canary here are the same graph: every shadow difference is exactly 0
// unless a shadow run read another request's rows.
func TestShadowScoresTheRowsItWasGiven(t *testing.T) {
	m := testutil.MustModel(t, 1)
	served := NewServed("calling-score", fallback.CallingScore{})
	for version, slot := range []*loader.Slot{served.Production, served.Canary} {
		sess, err := loader.Open(m.Path, loader.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		slot.Swap(loader.NewLoaded(sess, version+1, m.Digest, nil))
		t.Cleanup(slot.Close)
	}
	served.SetRouting(Routing{Traffic: 100, Mode: "shadow", Blend: 1})
	s := NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), served)
	s.Budget = 10 * time.Second
	srv := NewServer("127.0.0.1:0", s.Handler(), s.Logger)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	const clients, requests, rows = 4, 25, 64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < requests; i++ {
				data := make([]byte, 0, rows*39*4)
				for r := 0; r < rows; r++ {
					for _, v := range testutil.Row(float32(c*requests*rows+i*rows+r) / (clients * requests * rows)) {
						data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
					}
				}
				header := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[%d,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}]}`, rows, len(data))
				req, _ := http.NewRequest("POST", srv.URL()+"/v2/models/calling-score/infer", strings.NewReader(header+string(data)))
				req.Header.Set(HeaderInferenceLength, strconv.Itoa(len(header)))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.WaitShadows()
	resp, err := http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var sum, count float64 = -1, -1
	for _, line := range strings.Split(string(text), "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "modelops_scorer_shadow_abs_diff_") {
			switch strings.TrimSuffix(strings.TrimPrefix(name, "modelops_scorer_shadow_abs_diff_"), `{model="calling-score"}`) {
			case "sum":
				sum, _ = strconv.ParseFloat(value, 64)
			case "count":
				count, _ = strconv.ParseFloat(value, 64)
			}
		}
	}
	if count < rows || sum != 0 {
		t.Fatalf("shadow differences: %v rows shadowed, summing to %v; want at least %d rows, summing to 0 (the same graph on the same rows)", count, sum, rows)
	}
}

// A graceful close lets a request that is waiting for a turn finish: closing the
// fasthttp server must not cancel it (fasthttp's request context is done as soon
// as its shutdown begins, which would answer 500).
func TestCloseLetsQueuedRequestsFinish(t *testing.T) {
	s := NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), NewServed("calling-score", fallback.CallingScore{}))
	s.MaxInFlight, s.Budget = 1, 30*time.Second
	srv := NewServer("127.0.0.1:0", s.Handler(), s.Logger)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	release, err := s.Admit(context.Background(), time.Second) // the only turn, taken
	if err != nil {
		t.Fatal(err)
	}
	status := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL()+"/v1/score", "application/json", strings.NewReader(`{"features":[`+strings.TrimSuffix(strings.Repeat("0.5,", 39), ",")+`]}`))
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	for s.Waiting() == 0 {
		runtime.Gosched()
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(context.Background()) }()
	// Once the listener refuses new connections, the shutdown has begun.
	for {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL(), "http://"))
		if err != nil {
			break
		}
		c.Close()
		runtime.Gosched()
	}
	select {
	case code := <-status:
		t.Fatalf("the queued request was answered %d while its turn was still taken", code)
	default:
	}
	release()
	if code := <-status; code != http.StatusOK {
		t.Fatalf("queued request across a graceful close: %d, want 200", code)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestConnectionsAcceptedWhileClosingAreDropped: a connection accepted after
// Close has dropped the fresh ones, before the shutdown closes the listener,
// is let go at once rather than kept until its read timeout.
func TestConnectionsAcceptedWhileClosingAreDropped(t *testing.T) {
	s := NewServer("127.0.0.1:0", NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), NewServed("calling-score", fallback.CallingScore{})).Handler(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.ReadTimeout = time.Minute
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.dropFresh() // Close's first step, without the shutdown that follows it
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v: the connection was kept open", n, err)
	}
}
