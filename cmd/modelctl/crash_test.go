package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/trainer"
	"github.com/modelops/modelops/internal/wire"
)

// TestKillNineDuringAStorm SIGKILLs the control plane at random moments while
// clients push, promote and roll back, restarts it each time, and checks that
// the bbolt file is consistent, every acknowledged operation is there, revisions
// only grow, and no version points at a missing blob.
func TestKillNineDuringAStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 20 kills of a real process")
	}
	data := t.TempDir()
	killNineStorm(t, []string{"--data", data}, func() { checkBolt(t, filepath.Join(data, "registry.db")) }, nil)
}

// TestKillNineDuringAStormOnEtcd is the same storm against a registry in a
// three-member etcd cluster, with a second control plane beside the one killed:
// the monitor runs on the first until its first kill, and the second takes it
// over within 10 s (the election's lease runs out).
func TestKillNineDuringAStormOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 20 kills of a real process")
	}
	cluster := testutil.MustEtcd(t, 3)
	meta := cluster.URL("storm")
	args := []string{"--data", t.TempDir(), "--meta", meta, "--store", "file://" + filepath.Join(t.TempDir(), "artifacts")}
	var survivor *app.ControlPlane
	killNineStorm(t, args, nil, func(round int, url string) {
		switch round {
		case 0:
			// The first replica up leads; the survivor starts beside it.
			waitLeader(t, url, url, 10*time.Second)
			cfg := app.DefaultControlPlaneConfig()
			cfg.DataDir, cfg.Listen, cfg.Meta, cfg.Store = t.TempDir(), "127.0.0.1:0", meta, args[5]
			cfg.AdminToken = stormToken
			survivor = app.NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err := survivor.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { survivor.Close(context.Background()) })
		case 1:
			// Killed once: the survivor took the monitor over.
			waitLeader(t, survivor.URL(), survivor.URL(), 10*time.Second)
		}
	})
}

// waitLeader waits until the replica at url says the monitor runs on want.
func waitLeader(t *testing.T, url, want string, limit time.Duration) {
	t.Helper()
	cl := client.New(url)
	cl.Token = stormToken
	deadline := time.Now().Add(limit)
	for {
		li, err := cl.Leader(context.Background())
		if err == nil && li != nil && li.Monitor == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the monitor runs on %+v (%v), want %s", limit, li, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stormToken is the admin token of the storm's control planes.
var stormToken = registry.NewTokenSecret()

// killNineStorm runs modelctl serve with args, storms it, kills it with
// SIGKILL, 20 times; afterKill checks the store after each kill, and started
// is told each round's URL once the control plane answered.
func killNineStorm(t *testing.T, args []string, afterKill func(), started func(round int, url string)) {
	bin := filepath.Join(t.TempDir(), "modelctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Small distinct models to push.
	var models []string
	for i := 0; i < 60; i++ {
		data, err := trainer.ExportONNX(trainer.NewMLP(uint64(100+i), 39, 4, 1), trainer.ExportMeta{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), fmt.Sprintf("m%d.onnx", i))
		os.WriteFile(p, data, 0o644)
		models = append(models, p)
	}
	token := stormToken

	var (
		mu       sync.Mutex
		led      = &ledger{pushes: map[int]string{}, events: map[uint64]registry.Event{}}
		restarts int
	)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 20; round++ {
		port := freePort(t)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		cmd := exec.Command(bin, append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
		cmd.Env = append(os.Environ(), "MODELOPS_ADMIN_TOKEN="+token)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cl := client.New(url)
		cl.Token = token
		cl.HTTP.Timeout = 5 * time.Second
		if err := waitHealthy(url); err != nil {
			cmd.Process.Kill()
			t.Fatalf("round %d: %v", round, err)
		}
		if started != nil {
			started(round, url)
		}
		// After a restart, everything acknowledged before must be there.
		mu.Lock()
		led.verify(t, cl)
		mu.Unlock()
		restarts++

		ctx, cancel := context.WithCancel(context.Background())
		pushed := make(chan struct{}, 1)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ctx.Err() == nil && i < 200; i++ {
					switch w {
					case 0, 3:
						res, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: models[rand.IntN(len(models))]})
						if err == nil {
							mu.Lock()
							led.pushes[res.Version.Number] = res.Version.Digest
							mu.Unlock()
							select {
							case pushed <- struct{}{}:
							default:
							}
						}
					case 1:
						m, err := cl.Model(ctx, "calling-score")
						if err != nil || len(m.Versions) < 2 {
							continue
						}
						v := m.Versions[(i*7)%len(m.Versions)].Number
						// An unchanged answer (v was production already) made no event.
						if ev, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: v}); err == nil && !ev.Unchanged {
							mu.Lock()
							led.events[ev.Revision] = *ev
							mu.Unlock()
						}
					case 2:
						if ev, err := cl.Rollback(ctx, "calling-score", wire.AliasBody{}); err == nil {
							mu.Lock()
							led.events[ev.Revision] = *ev
							mu.Unlock()
						}
					}
				}
			}(w)
		}
		// A push verifies in a child process, which takes a moment to start:
		// the kill comes at a random moment after one push went in.
		select {
		case <-pushed:
		case <-time.After(30 * time.Second):
		}
		time.Sleep(time.Duration(30+rng.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cancel()
		wg.Wait()
		if afterKill != nil {
			afterKill()
		}
	}
	// One last start to check the final state.
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin, append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	cmd.Env = append(os.Environ(), "MODELOPS_ADMIN_TOKEN="+token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := waitHealthy(url); err != nil {
		t.Fatal(err)
	}
	cl := client.New(url)
	cl.Token = token
	led.verify(t, cl)
	t.Logf("%d kills; %d pushes and %d alias changes acknowledged, all found", restarts, len(led.pushes), len(led.events))
	if len(led.pushes) < 10 || len(led.events) < 10 {
		t.Fatalf("the storm did too little to prove anything: %d pushes, %d events", len(led.pushes), len(led.events))
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHealthy(url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("control plane at %s never became healthy", url)
}

// ledger is what the control plane acknowledged.
type ledger struct {
	pushes  map[int]string            // version → digest
	events  map[uint64]registry.Event // revision → event
	lastRev uint64
}

// verify checks a freshly restarted control plane against the ledger.
func (l *ledger) verify(t *testing.T, cl *client.Client) {
	t.Helper()
	ctx := context.Background()
	m, err := cl.Model(ctx, "calling-score")
	if client.StatusOf(err) == http.StatusNotFound && len(l.pushes) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	have := map[int]string{}
	for _, v := range m.Versions {
		have[v.Number] = v.Digest
		// No version points at a missing or damaged blob.
		rc, _, err := cl.Artifact(ctx, "calling-score", v.Number)
		if err != nil {
			t.Fatalf("v%d: artifact: %v", v.Number, err)
		}
		if _, err := io.Copy(io.Discard, registry.NewVerifyingReader(rc, v.Digest, v.Size)); err != nil {
			t.Fatalf("v%d: artifact does not verify after kill -9: %v", v.Number, err)
		}
		rc.Close()
	}
	for n, d := range l.pushes {
		if have[n] != d {
			t.Fatalf("acknowledged push v%d (%s) is %q after restart", n, d[:12], have[n])
		}
	}
	evs, err := cl.Events(ctx, "", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	byRev := map[uint64]registry.Event{}
	var prev uint64
	for _, e := range evs {
		if e.Revision <= prev {
			t.Fatalf("revisions do not grow: %d after %d", e.Revision, prev)
		}
		prev = e.Revision
		byRev[e.Revision] = e
	}
	if prev < l.lastRev {
		t.Fatalf("revision went back from %d to %d", l.lastRev, prev)
	}
	l.lastRev = prev
	for rev, want := range l.events {
		got, ok := byRev[rev]
		if !ok || got.Kind != want.Kind || got.From != want.From || got.To != want.To {
			t.Fatalf("acknowledged event %d (%s v%d→v%d) is %+v after restart", rev, want.Kind, want.From, want.To, got)
		}
	}
}

func checkBolt(t *testing.T, path string) {
	t.Helper()
	if err := checkBoltFile(path); err != nil {
		t.Fatalf("bbolt check after kill -9: %v", err)
	}
}
