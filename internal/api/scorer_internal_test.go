package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/fallback"
)

func TestStickyArmsAndShares(t *testing.T) {
	for _, share := range []float64{10, 50} {
		in := 0
		const keys = 100000
		for i := 0; i < keys; i++ {
			k := fmt.Sprintf("user-%d", i)
			a := pick(k, share)
			if pick(k, share) != a || pick(k, share) != a {
				t.Fatalf("key %s changed arms", k)
			}
			if a {
				in++
			}
		}
		got := 100 * float64(in) / keys
		if math.Abs(got-share) > 2 {
			t.Fatalf("share %g%%: %.2f%% of %d keys went to the challenger", share, got, keys)
		}
	}
	if pick("anything", 0) || !pick("anything", 100) {
		t.Fatal("0% and 100% must be absolute")
	}
}

func TestOverCapacityAnswersWithRetryAfter(t *testing.T) {
	s := NewScorer(slog.New(slog.NewTextHandler(io.Discard, nil)), NewServed("calling-score", fallback.CallingScore{}))
	s.MaxInFlight, s.MaxQueue = 1, 0
	srv := NewServer("127.0.0.1:0", s.Handler(), s.Logger)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	body := `{"features":[` + strings.TrimSuffix(strings.Repeat("0.5,", 39), ",") + `]}`
	s.sem <- struct{}{} // every turn taken
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
	<-s.sem
	resp, err = http.Post(srv.URL()+"/v1/score", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with a turn free: %d", resp.StatusCode)
	}
}
