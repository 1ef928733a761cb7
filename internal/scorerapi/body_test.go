package scorerapi_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/scorerapi"
)

// rssBytes is this process's resident set size (VmRSS in /proc/self/status).
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// A body is never given more memory than has arrived: 500 connections that
// each declare a 1.3 MB (or a 1 MB) body and send one byte grow the scorer (this test
// process, which serves it, measured by VmRSS after a GC) by less than 50 MB.
// The Go heap in use is held to the same bound: a reservation the kernel has
// not backed with pages yet (untouched, zero) is not in the RSS until it is
// written, but it is memory the server has promised away.
func TestDeclaredLengthsReserveNothing(t *testing.T) {
	s := newScorer(scorerapi.NewServed("calling-score", fallback.CallingScore{}))
	srv := scorerapi.NewServer("127.0.0.1:0", s.Handler(), s.Logger)
	srv.ReadTimeout = time.Minute
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	addr := strings.TrimPrefix(srv.URL(), "http://")
	runtime.GC()
	debug.FreeOSMemory()
	before := rssBytes(t)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	goroutines := runtime.NumGoroutine()
	const conns, declared = 500, 1310720
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		path := "/v1/score"
		if i%2 == 1 {
			path = "/v2/models/calling-score/infer"
		}
		// Half declare 1.3 MB (past the 1 MiB limit, within what a server
		// reads to answer 413 cleanly), half just under the limit.
		length := declared
		if i%4 >= 2 {
			length = 1_000_000
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, length)
	}
	// Every connection's handler is reading its body once each has a
	// goroutine of its own; give them a moment to reach the read.
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() < goroutines+conns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory()
	grown := rssBytes(t) - before
	runtime.ReadMemStats(&ms)
	heapGrown := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("RSS grew %.1f MB, the heap in use %.1f MB, for %d connections declaring %.1f MB each (%d goroutines)",
		float64(grown)/(1<<20), float64(heapGrown)/(1<<20), conns, float64(declared)/(1<<20), runtime.NumGoroutine()-goroutines)
	// Reserving the declared lengths would hold 500 × 1.2 MB in the heap; under
	// the race detector RSS is several times the heap whatever the code does,
	// so there the heap alone is held to the bound.
	if heapGrown > 50<<20 || (!raceDetector && grown > 50<<20) {
		t.Fatalf("RSS grew %d MB and the heap in use %d MB, want each under 50 MB (RSS not judged under the race detector: %v)", grown>>20, heapGrown>>20, raceDetector)
	}
}
