package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// replica is an HTTP server on loopback that answers every request with its
// name and counts them.
func replica(t *testing.T, name string, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"models":[{"name":"`+name+`"}]}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestAListOfControlPlanesFailsOverToTheNext: requests stay on the first
// replica while it answers, move to the next once it is gone (a read, and a
// change that was never sent), and stay there.
func TestAListOfControlPlanesFailsOverToTheNext(t *testing.T) {
	var hitsA, hitsB atomic.Int64
	a := replica(t, "a", &hitsA)
	b := replica(t, "b", &hitsB)
	c := New(a.URL + "/, " + b.URL)
	if got := c.URLs(); len(got) != 2 || got[0] != a.URL || got[1] != b.URL {
		t.Fatalf("URLs() = %q, want [%s %s]", got, a.URL, b.URL)
	}
	ctx := context.Background()
	name := func() string {
		t.Helper()
		ms, err := c.Models(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ms[0].Name
	}
	for range 3 {
		if got := name(); got != "a" {
			t.Fatalf("answered by %q while the first replica is up, want a", got)
		}
	}
	if hitsB.Load() != 0 {
		t.Fatalf("the second replica took %d requests while the first was up", hitsB.Load())
	}
	a.Close()
	if got := name(); got != "b" {
		t.Fatalf("answered by %q after the first replica died, want b", got)
	}
	if c.Current() != b.URL {
		t.Fatalf("Current() = %s, want %s", c.Current(), b.URL)
	}
	// A report (a POST) to a replica that refuses connections is sent to the
	// next one, which gets its body whole.
	c2 := New(a.URL + "," + b.URL)
	before := hitsB.Load()
	if err := c2.Report(ctx, []byte(`{"node":"n"}`)); err != nil {
		t.Fatalf("report with the first replica gone: %v", err)
	}
	if hitsB.Load() != before+1 {
		t.Fatalf("the second replica took %d reports, want 1", hitsB.Load()-before)
	}
	// With every replica gone, the error names the last one tried.
	b.Close()
	_, err := c.Models(ctx)
	if err == nil || !strings.Contains(err.Error(), "control plane at ") {
		t.Fatalf("with every replica gone: %v, want a connection error naming one", err)
	}
}

// TestCheckBaseURLTakesAList: each URL of a list is checked.
func TestCheckBaseURLTakesAList(t *testing.T) {
	if err := CheckBaseURL("http://a:8080,https://b:8080"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"http://a:8080,b:8080", "localhost:8080", "http://a:8080,"} {
		if err := CheckBaseURL(bad); err == nil {
			t.Fatalf("CheckBaseURL(%q) = nil, want an error", bad)
		}
	}
}
