package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
)

// runMainEnv makes this test binary run as modelctl (see TestMain).
const runMainEnv = "MODELCTL_TEST_RUN_MAIN"

// modelctl runs this test binary as modelctl with args, and returns its stderr
// and exit code.
func modelctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	// A serve that starts regardless would run until killed.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "MODELOPS_ADMIN_TOKEN="+testToken)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stderr.String(), 0
	case errors.As(err, &exit):
		return stderr.String(), exit.ExitCode()
	}
	t.Fatal(err)
	return "", 0
}

// A damaged registry file stops `modelctl serve` with the documented message
// (move it aside, restore a backup) and exit code 1, never a panic: a
// truncated file made bbolt fault reading pages it no longer had, a zeroed
// page made it panic.
func TestServeRefusesADamagedRegistryFile(t *testing.T) {
	// A registry of a few pages.
	src := filepath.Join(t.TempDir(), "registry.db")
	r := registry.New(src, nil, loader.Verifier{})
	if err := r.Open(); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, _, err := r.CreateToken(context.Background(), "viewer", registry.RoleViewer); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	sound, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	// The newer of the two meta pages names the root page.
	meta := func(page int) (txid, root uint64) {
		m := sound[page*pageSize+16:]
		return binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[16:])
	}
	tx0, root := meta(0)
	if tx1, root1 := meta(1); tx1 > tx0 {
		root = root1
	}
	// And a page of the tree below the root, one a bucket in use starts at
	// (bbolt panicked on it): the root page lists the buckets, each leaf
	// element (flags, pos, ksize, vsize) pointing at its name and its header,
	// whose first 8 bytes are the bucket's root page. A page merely marked a
	// leaf may be a free one, whose zeroing damages nothing.
	leaf := uint64(0)
	rp := sound[root*pageSize:]
	if flags := binary.LittleEndian.Uint16(rp[8:]); flags != 0x02 {
		t.Fatalf("root page %d has flags %#x, want a leaf page of buckets", root, flags)
	}
	for i := 0; i < int(binary.LittleEndian.Uint16(rp[10:])); i++ {
		el := rp[16+16*i:]
		pos, ksize := binary.LittleEndian.Uint32(el[4:]), binary.LittleEndian.Uint32(el[8:])
		start := 16 + 16*i + int(pos)
		if string(rp[start:start+int(ksize)]) == "tokens" {
			leaf = binary.LittleEndian.Uint64(rp[start+int(ksize):])
		}
	}
	if leaf == 0 || leaf == root {
		t.Fatalf("the tokens bucket has no page of its own (root %d)", leaf)
	}
	damage := map[string]func([]byte) []byte{
		"zeroed leaf": func(b []byte) []byte { clear(b[leaf*pageSize : (leaf+1)*pageSize]); return b },
		"truncated":   func(b []byte) []byte { return b[:3*pageSize] },
		"empty":       func(b []byte) []byte { return b[:0] },
		"zeroed root": func(b []byte) []byte { clear(b[root*pageSize : (root+1)*pageSize]); return b },
		"wrong magic": func(b []byte) []byte {
			copy(b[16:], "junk")
			copy(b[pageSize+16:], "junk")
			return b
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			if err := os.WriteFile(filepath.Join(data, "registry.db"), f(bytes.Clone(sound)), 0o600); err != nil {
				t.Fatal(err)
			}
			stderr, code := modelctl(t, "serve", "--data", data, "--listen", "127.0.0.1:0")
			if code != 1 || !strings.Contains(stderr, "move it aside and put a backup in its place") {
				t.Fatalf("serve on a registry file %s: exit %d, stderr:\n%s\nwant exit 1 and the message", name, code, stderr)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "fatal error") {
				t.Fatalf("serve on a registry file %s crashed:\n%s", name, stderr)
			}
			t.Logf("%s: %s", name, strings.TrimSpace(stderr[strings.LastIndex(stderr, "modelctl:"):]))
		})
	}
}
