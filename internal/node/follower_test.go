package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/node"
	"github.com/modelops/modelops/internal/testutil"
)

// A watch stream the control plane refuses (429: the token holds as many as
// it may) is retried with a growing wait: it was retried every 100 ms for as
// long as the refusal lasted, each time with a deployment read besides.
func TestARefusedWatchStreamIsRetriedWithBackoff(t *testing.T) {
	testutil.InitORT()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.MaxWatchStreamsPerToken = 1
	var watches atomic.Int64
	h := cp.Handler()
	srv := api.NewServer("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/watch") {
			watches.Add(1)
		}
		h.ServeHTTP(w, r)
	}), discard)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	// Another stream from this address holds the only place.
	resp, err := http.Get(srv.URL() + "/api/v1/watch")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the first stream: %v %v", resp, err)
	}
	defer resp.Body.Close()

	ctx, cancel := context.WithCancel(context.Background())
	f := &node.Follower{Client: client.New(srv.URL()), Model: "calling-score", Slot: &loader.Slot{}, CandidateSlot: &loader.Slot{},
		Options: loader.DefaultOptions(), MaxBackoff: time.Minute, Logger: discard}
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	// Wait on the condition, not on time: the 4th refused attempt comes
	// after waits of 100+200+400 ms with backoff, 300 ms without.
	for watches.Load() < 5 {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	n := watches.Load()
	for watches.Load() < n+4 && time.Since(start) < 5*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	got := watches.Load() - n
	cancel()
	<-done
	// With backoff, the next waits are 1.6 s, 3.2 s, 6.4 s, ...: at most
	// two more tries in 5 s; without it, about 50.
	if got >= 4 {
		t.Fatalf("%d more refused watch requests within 5 s of the 5th: the follower retries without backoff", got)
	}
}
