package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestMissingRuntimeStopsWithOneClearLine(t *testing.T) {
	err := run(context.Background(), []string{"--onnxruntime-lib", "/nonexistent/libonnxruntime.so", "--listen", "127.0.0.1:0"})
	if err == nil {
		t.Fatal("scorer started without ONNX Runtime")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "make ort") || !strings.Contains(msg, "ONNXRUNTIME_LIB") {
		t.Fatalf("error %q: want one line naming `make ort` and ONNXRUNTIME_LIB", msg)
	}
}

func TestRejectsStrayArguments(t *testing.T) {
	if err := run(context.Background(), []string{"extra"}); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("err = %v", err)
	}
}

// buildScorer builds the scorer binary for a test that runs it (skipped with
// -short).
func buildScorer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("short: builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "scorer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestHelpSucceedsAndNamesEveryValue runs the binary with --help: it exits 0,
// and every flag that takes a value names it in one word (flag takes a
// backquoted word in the usage for that name, so a stray backquote shows).
func TestHelpSucceedsAndNamesEveryValue(t *testing.T) {
	bin := buildScorer(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("scorer --help: %v\n%s", err, out)
	}
	flags := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		flags++
		if f := strings.Fields(line); len(f) > 2 {
			t.Errorf("flag line %q: the value's name is more than one word", line)
		}
	}
	// The token is read from the environment only: the help must say where.
	if flags < 15 || !strings.Contains(string(out), "-batch-max-rows N") || !strings.Contains(string(out), "MODELOPS_SCORER_TOKEN") {
		t.Fatalf("--help lists %d flags:\n%s", flags, out)
	}
}

// TestSIGTERMDrainsAndExitsZero runs the scorer binary, keeps requests in flight,
// sends SIGTERM, and checks that every request was answered and the exit is clean.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	bin := buildScorer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--model-dir", dir, "--listen", addr, "--grpc-listen", "127.0.0.1:0", "--cache-dir", filepath.Join(dir, "cache"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scorer not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	body := `{"features":[` + strings.TrimSuffix(strings.Repeat("0.5,", 39), ",") + `]}`
	var wg sync.WaitGroup
	var failed, answered atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				resp, err := http.Post(url+"/v1/score", "application/json", strings.NewReader(body))
				if err != nil {
					return // the listener closed: no new requests after SIGTERM
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
				answered.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	wg.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v, want 0", err)
	}
	if failed.Load() != 0 || answered.Load() == 0 {
		t.Fatalf("%d answered, %d not 200", answered.Load(), failed.Load())
	}
}
