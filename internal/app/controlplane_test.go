package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/fileblob"
	"github.com/modelops/modelops/internal/testutil"
)

// The first admin token is printed once: a start that fails after making it
// (its port taken) would lose it, and every way in with it. So it is made only
// once the API listens.
func TestAFailedStartMakesNoFirstToken(t *testing.T) {
	testutil.InitORT()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := DefaultControlPlaneConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = taken.Addr().String()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := NewControlPlane(cfg, log).Open(context.Background()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Open on a taken port: %v", err)
	}
	tokens := func() int {
		t.Helper()
		blobs, _ := fileblob.New(filepath.Join(cfg.DataDir, "artifacts"))
		r := registry.New(filepath.Join(cfg.DataDir, "registry.db"), blobs, loader.Verifier{})
		if err := r.Open(); err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ts, err := r.Tokens(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(ts)
	}
	if n := tokens(); n != 0 {
		t.Fatalf("a start that failed left %d tokens, whose secret nobody saw", n)
	}
	cfg.Listen = "127.0.0.1:0"
	cp := NewControlPlane(cfg, log)
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp.Close(context.Background())
	if n := tokens(); n != 1 {
		t.Fatalf("a start that listens made %d tokens, want the first admin's", n)
	}
}
