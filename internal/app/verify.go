package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
)

// ProcessVerifier verifies pushed artifacts in a child process: ONNX Runtime
// runs an admin's graph there, under a CPU-time limit, an address-space limit
// and a deadline, so a graph that loops or allocates without bound costs a
// child, never the control plane. The child is killed when the push's context
// ends (the client went away).
type ProcessVerifier struct {
	// Command runs a verify child: a binary and its arguments, which answers
	// loader.ServeVerify (`modelctl verify-artifact`).
	Command []string
	// Library is the ONNX Runtime library the child loads.
	Library string
	// CPUTime, AddressSpace and Timeout are the child's limits.
	CPUTime      time.Duration
	AddressSpace int64
	Timeout      time.Duration
	// slots bounds the children running at once: each may use AddressSpace.
	slots chan struct{}
	// running counts children alive now.
	running atomic.Int64
}

var _ registry.Verifier = (*ProcessVerifier)(nil)

// NewProcessVerifier returns a verifier that runs command, at most concurrent
// children at once.
func NewProcessVerifier(command []string, concurrent int) *ProcessVerifier {
	return &ProcessVerifier{Command: command, slots: make(chan struct{}, max(concurrent, 1))}
}

// Running is the number of verify children alive now.
func (v *ProcessVerifier) Running() int { return int(v.running.Load()) }

// maxChildOutput bounds what is kept of a child's stdout and stderr.
const maxChildOutput = 64 << 10

// VerifyArtifact implements registry.Verifier. The artifact's own faults are
// plain errors (the registry makes them 422); the verifier's own failures wrap
// registry.ErrUnavailable.
func (v *ProcessVerifier) VerifyArtifact(ctx context.Context, path, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error) {
	var none artifact.Signature
	if os.Getenv(loader.VerifyChildEnv) != "" {
		return none, fmt.Errorf("%w: a verify child starts no verify child (does %s answer %q?)", registry.ErrUnavailable, v.Command[0], loader.VerifyCommand)
	}
	select {
	case v.slots <- struct{}{}:
		defer func() { <-v.slots }()
	case <-ctx.Done():
		return none, ctx.Err()
	}
	req := loader.VerifyRequest{Path: path, Model: model, Want: want, Library: v.Library, CPUTime: v.CPUTime, AddressSpace: v.AddressSpace}
	if card != nil {
		req.Card = card.Raw()
	}
	in, err := json.Marshal(req)
	if err != nil {
		return none, err
	}
	runCtx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, v.Command[0], v.Command[1:]...)
	cmd.Env = append(childEnv(), loader.VerifyChildEnv+"=1")
	cmd.Stdin = bytes.NewReader(in)
	stdout, stderr := &capped{max: maxChildOutput}, &capped{max: maxChildOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return none, fmt.Errorf("%w: starting the verify process: %v", registry.ErrUnavailable, err)
	}
	v.running.Add(1)
	err = cmd.Wait()
	v.running.Add(-1)
	switch {
	case ctx.Err() != nil:
		return none, fmt.Errorf("verification stopped: %w", ctx.Err())
	case runCtx.Err() != nil:
		return none, fmt.Errorf("verification took longer than its deadline of %s (a graph that loops?)", v.Timeout)
	case err == nil:
		var ans loader.VerifyAnswer
		if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
			return none, fmt.Errorf("%w: the verify process answered no JSON (%v): %s", registry.ErrUnavailable, err, stdout.gist())
		}
		if ans.Error != "" {
			return none, errors.New(ans.Error)
		}
		return ans.Signature, nil
	}
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		if sig := st.Signal(); (sig == syscall.SIGKILL || sig == syscall.SIGXCPU) && v.CPUTime > 0 && cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime() >= v.CPUTime-time.Second/2 {
			return none, fmt.Errorf("verification used up its CPU-time limit of %s (a graph that loops?)", v.CPUTime)
		}
		return none, fmt.Errorf("verification process died of %s (address-space limit %s; a graph that allocates too much?): %s", st.Signal(), bytesText(v.AddressSpace), stderr.gist())
	}
	// The child exits 1 when it could not answer (its own failure, not the
	// artifact's); the Go runtime exits 2 when it runs out of memory.
	if cmd.ProcessState.ExitCode() == 1 {
		return none, fmt.Errorf("%w: the verify process could not answer: %s", registry.ErrUnavailable, stderr.gist())
	}
	return none, fmt.Errorf("verification process failed (%v; address-space limit %s): %s", err, bytesText(v.AddressSpace), stderr.gist())
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// gist is the line of the child's output that says why it failed: a Go
// runtime's fatal error or panic, C++'s terminate message, else the first line;
// at most 300 bytes of it.
func (c *capped) gist() string {
	lines := strings.Split(strings.TrimSpace(c.String()), "\n")
	pick := strings.TrimSpace(lines[0])
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "terminate called") || strings.HasPrefix(l, "modelctl:") {
			pick = l
			break
		}
	}
	if pick == "" {
		return "(no output)"
	}
	if len(pick) > 300 {
		pick = pick[:300] + "…"
	}
	return pick
}

func bytesText(n int64) string {
	if n <= 0 {
		return "none"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// childEnv is the part of this process's environment a verify child gets: no
// tokens or cloud credentials reach the process that runs an admin's graph.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PATH", "HOME", "TMPDIR", "LANG", "LD_LIBRARY_PATH", loader.LibraryEnv, "GOCOVERDIR", "GODEBUG", "GOMAXPROCS", "GOTRACEBACK":
			env = append(env, kv)
		}
	}
	return env
}
