package main

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// A registry made on the embedded default is copied to etcd whole, and a
// control plane started on the copy serves it; a second copy into the same
// place, or from a file that is not there, is refused.
func TestMigrateBoltToEtcd(t *testing.T) {
	ctx := context.Background()
	cfg := app.DefaultControlPlaneConfig()
	cfg.AdminToken = testToken
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cp := app.NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := cp.Open(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, seed := range []string{"1", "2"} {
		if _, _, err := cli(t, cp.URL(), "train", "--seed", seed, "--samples", "200", "--epochs", "1", "--quiet", "--out", filepath.Join(dir, seed)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cli(t, cp.URL(), "push", filepath.Join(dir, seed, "model.onnx"), "--model", "calling-score"); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"promote", "calling-score", "1"}, {"promote", "calling-score", "2"}, {"token", "create", "--name", "ci", "--role", "viewer"}} {
		if _, _, err := cli(t, cp.URL(), args...); err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
	}
	cp.Close(ctx)

	cluster := testutil.MustEtcd(t, 1)
	from := (&url.URL{Scheme: "bolt", Path: filepath.Join(cfg.DataDir, "registry.db")}).String()
	to := cluster.URL("migrated")
	out, _, err := cli(t, cp.URL(), "migrate", "--from", from, "--to", to)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if !strings.Contains(out, "copied 1 models, 2 versions, 4 events (revision 4) and 2 tokens") {
		t.Fatalf("migrate said %q", out)
	}
	src, err := registry.OpenMetaStore(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := registry.OpenMetaStore(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := registry.SameMeta(ctx, dst, src); err != nil {
		t.Fatalf("the copy: %v", err)
	}
	src.Close()

	// A control plane on the copy: the same production version, history and
	// admin token.
	cfg.Meta, cfg.DataDir = to, t.TempDir()
	cp = app.NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := cp.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer cp.Close(ctx)
	if out, _, err := cli(t, cp.URL(), "history", "-o", "json"); err != nil || strings.Count(out, `"revision"`) != 4 {
		t.Fatalf("events on the copy: %q %v", out, err)
	}
	if out, _, err := cli(t, cp.URL(), "status"); err != nil || !strings.Contains(out, "monitor runs on ") {
		t.Fatalf("status of a control plane on etcd: %q %v, want it to say where the monitor runs", out, err)
	}
	if d, err := cp.Registry.Deployment(ctx, "calling-score"); err != nil || d.Production == nil || d.Production.Version != 2 {
		t.Fatalf("the copy deploys %+v (%v)", d, err)
	}

	if _, _, err := cli(t, cp.URL(), "migrate", "--from", from, "--to", to); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second copy into the same prefix: %v", err)
	}
	if _, _, err := cli(t, cp.URL(), "migrate", "--from", "bolt://"+filepath.Join(t.TempDir(), "none.db"), "--to", cluster.URL("other")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a copy from a missing file: %v", err)
	}
}
