// Package e2e runs the control plane and scorer nodes together, as the binaries
// wire them, on :0 with real ONNX Runtime, bbolt and HTTP.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func TestMain(m *testing.M) {
	testutil.ServeVerifyChild()
	testutil.InitORT()
	os.Exit(m.Run())
}

func quietLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Tokens every test control plane accepts: an admin's and a scorer node's.
var (
	adminToken  = registry.NewTokenSecret()
	scorerToken = registry.NewTokenSecret()
)

// adminClient talks to a control plane with the admin token.
func adminClient(url string) *client.Client {
	c := client.New(url)
	c.Token = adminToken
	return c
}

// addScorerToken stores the scorer node token in a running control plane.
func addScorerToken(tb testing.TB, cp *app.ControlPlane) {
	tb.Helper()
	if _, err := cp.Registry.AddToken("test-scorer", registry.RoleScorer, scorerToken); err != nil {
		tb.Fatal(err)
	}
}

// nodeToken is a scorer token of its own for one more node of the control
// plane at cpURL: a scorer token is bound to the node of its first report. With
// no control plane there, the shared one (nothing checks it).
func nodeToken(tb testing.TB, cpURL string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t, err := adminClient(cpURL).CreateToken(ctx, "test-node", registry.RoleScorer)
	if err != nil {
		return scorerToken
	}
	return t.Secret
}

// MustControlPlane starts a control plane on :0 over a temp data dir, with its
// blobs in store (default: the data dir).
func MustControlPlane(tb testing.TB, store ...string) *app.ControlPlane {
	tb.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir = filepath.Join(tb.TempDir(), "data")
	cfg.Listen = "127.0.0.1:0"
	if len(store) > 0 {
		cfg.Store = store[0]
	}
	cfg.AdminToken = adminToken
	cp := app.NewControlPlane(cfg, quietLogger(tb).With("proc", "control-plane"))
	if err := cp.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cp.Close(context.Background()) })
	addScorerToken(tb, cp)
	return cp
}

// MustScorer starts a scorer node on :0 following cpURL, with its artifact cache
// in cacheDir (default: a new temp dir).
func MustScorer(tb testing.TB, cpURL string, cacheDir ...string) *app.Scorer {
	tb.Helper()
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ControlPlane = cpURL
	cfg.Token = nodeToken(tb, cpURL)
	cfg.Listen = "127.0.0.1:0"
	cfg.GRPCListen = "127.0.0.1:0"
	cfg.CacheDir = filepath.Join(tb.TempDir(), "cache")
	if len(cacheDir) > 0 {
		cfg.CacheDir = cacheDir[0]
	}
	s := app.NewScorer(cfg, quietLogger(tb).With("proc", "scorer"))
	if err := s.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func mustPush(tb testing.TB, cl *client.Client, m testutil.Model) int {
	tb.Helper()
	res, err := cl.Push(context.Background(), client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card})
	if err != nil {
		tb.Fatalf("push: %v", err)
	}
	return res.Version.Number
}

// servingV1 starts a control plane (blobs in store, if given) with two pushed
// versions, v1 promoted, and a scorer serving it.
func servingV1(t *testing.T, store ...string) (*app.ControlPlane, *client.Client, *app.Scorer, *http.Client) {
	t.Helper()
	cp := MustControlPlane(t, store...)
	cl := adminClient(cp.URL())
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	if _, err := cl.Promote(context.Background(), "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	sc := MustScorer(t, cp.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 1 })
	return cp, cl, sc, hc
}

type scored struct {
	status int
	resp   wire.ScoreResponse
	err    error
}

// score asks for one row with a generous latency budget: these tests are about
// which version answers, and a loaded CI machine under the race detector must not
// turn a slow run into a fallback.
func score(hc *http.Client, url string, row []float32) scored {
	return scoreBody(hc, url, map[string]any{"features": row, "budget_ms": 10000})
}

func scoreBody(hc *http.Client, url string, req map[string]any) scored {
	body, _ := json.Marshal(req)
	resp, err := hc.Post(url+"/v1/score", "application/json", bytes.NewReader(body))
	if err != nil {
		return scored{err: err}
	}
	defer resp.Body.Close()
	out := scored{status: resp.StatusCode}
	out.err = json.NewDecoder(resp.Body).Decode(&out.resp)
	return out
}

// waitFor polls fn until it returns true or the deadline passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, fn func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushPromoteScoreSwapRollback(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	m1, m2 := testutil.MustModel(t, 1), testutil.MustModel(t, 2)
	if v := mustPush(t, cl, m1); v != 1 {
		t.Fatalf("first push is v%d", v)
	}
	if v := mustPush(t, cl, m2); v != 2 {
		t.Fatalf("second push is v%d", v)
	}

	sc := MustScorer(t, cp.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	row := testutil.Row(0.3)

	// Nothing promoted: the fallback answers, and says so.
	r := score(hc, sc.URL(), row)
	if r.err != nil || r.status != 200 || r.resp.Source != scorerapi.SourceFallback || r.resp.Reason != "no_model" {
		t.Fatalf("before promotion: %+v, want 200 fallback no_model", r)
	}

	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v1 to serve", 10*time.Second, func() bool {
		r := score(hc, sc.URL(), row)
		return r.status == 200 && r.resp.Source == scorerapi.SourceModel && r.resp.Version == 1
	})
	r = score(hc, sc.URL(), row)
	if want := m1.MLP.Forward(row)[0]; math.Abs(float64(*r.resp.Score-want)) > 1e-5 {
		t.Fatalf("v1 scored %v, its Go forward pass says %v", *r.resp.Score, want)
	}

	// Promote v2 while clients score without pause.
	const clients = 4
	const maxPerClient = 20000
	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		mu       sync.Mutex
		failures []string
		counts   = map[int]int{}
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			sawV2 := false
			for i := 0; i < maxPerClient; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := score(hc, sc.URL(), row)
				mu.Lock()
				switch {
				case r.err != nil || r.status != 200:
					failures = append(failures, fmt.Sprintf("client %d request %d: status %d err %v", c, i, r.status, r.err))
				case r.resp.Source != scorerapi.SourceModel:
					failures = append(failures, fmt.Sprintf("client %d request %d: source %s reason %s", c, i, r.resp.Source, r.resp.Reason))
				case r.resp.Version != 1 && r.resp.Version != 2:
					failures = append(failures, fmt.Sprintf("client %d request %d: version %d", c, i, r.resp.Version))
				case sawV2 && r.resp.Version == 1:
					failures = append(failures, fmt.Sprintf("client %d request %d: v1 after this client saw v2", c, i))
				}
				counts[r.resp.Version]++
				mu.Unlock()
				if r.resp.Version == 2 {
					sawV2 = true
				}
			}
		}(c)
	}
	waitFor(t, "load to start", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return counts[1] >= 200 })
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2 to serve under load", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return counts[2] >= 200 })
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d bad responses during the swap, first: %s", len(failures), failures[0])
	}
	t.Logf("responses during the swap: v1 %d, v2 %d", counts[1], counts[2])
	for i := 0; i < 20; i++ {
		if r := score(hc, sc.URL(), row); r.resp.Version != 2 {
			t.Fatalf("after the swap a request was answered by v%d", r.resp.Version)
		}
	}

	if _, err := cl.Rollback(ctx, "calling-score", wire.AliasBody{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rollback to v1", 10*time.Second, func() bool {
		r := score(hc, sc.URL(), row)
		return r.status == 200 && r.resp.Version == 1
	})

	if got := sc.Slot.Swaps(); got != 2 {
		t.Fatalf("%d swaps, want 2 (v1→v2, v2→v1)", got)
	}
	waitFor(t, "retired sessions to be destroyed", 5*time.Second, func() bool { return sc.Slot.Destroyed() == sc.Slot.Swaps() })

	evs, err := cl.Events(ctx, "calling-score", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if fmt.Sprint(kinds) != "[pushed pushed promoted promoted rolled_back]" {
		t.Fatalf("history %v", kinds)
	}
}

func TestScorerStartsBeforeTheModelExists(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	sc := MustScorer(t, cp.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	row := testutil.Row(0.7)

	resp, err := hc.Get(sc.URL() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz with fallback only: %v %v", resp, err)
	}
	resp.Body.Close()
	r := score(hc, sc.URL(), row)
	if r.status != 200 || r.resp.Source != scorerapi.SourceFallback || r.resp.Score == nil {
		t.Fatalf("no model in the registry: %+v, want a fallback score", r)
	}

	cl := adminClient(cp.URL())
	m := testutil.MustModel(t, 5)
	mustPush(t, cl, m)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scorer to switch to the model without restart", 10*time.Second, func() bool {
		r := score(hc, sc.URL(), row)
		return r.resp.Source == scorerapi.SourceModel && r.resp.Version == 1
	})
}

func TestScorerKeepsServingWhenALoadFails(t *testing.T) {
	ctx := context.Background()
	cp, cl, sc, hc := servingV1(t)

	// Damage v2's blob behind the registry's back: the download fails its digest
	// check and the scorer keeps v1.
	v2, err := cl.Version(ctx, "calling-score", 2)
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(cp.Config.DataDir, "artifacts", "blobs", "sha256", v2.Digest)
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-10] ^= 0x55
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed load to be recorded", 10*time.Second, func() bool { return sc.Follower.Status().FailedLoads > 0 })
	r := score(hc, sc.URL(), testutil.Row(0.1))
	if r.status != 200 || r.resp.Source != scorerapi.SourceModel || r.resp.Version != 1 {
		t.Fatalf("after a failed load: %+v, want v1 still serving", r)
	}
	// The node tells the control plane why it does not serve v2, for `status`
	// and the dashboard, until it serves its deployment again.
	loadError := func() string {
		fleet, err := cl.Fleet(ctx)
		if err != nil || len(fleet) != 1 {
			return fmt.Sprintf("fleet %v %v", fleet, err)
		}
		return fleet[0].LoadErrors["calling-score"]
	}
	waitFor(t, "the node to report why it cannot serve v2", 10*time.Second, func() bool {
		e := loadError()
		return strings.Contains(e, "v2") && strings.Contains(e, "digest")
	})
	if _, err := cl.Rollback(ctx, "calling-score", wire.AliasBody{Reason: "v2's blob is damaged"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the load error to clear once production is the version served", 10*time.Second, func() bool { return loadError() == "" })
	if st := sc.Follower.Status(); st.LastError != "" || st.FailedLoads == 0 {
		t.Fatalf("follower status after the rollback: %+v, want the error gone and the failure still counted", st)
	}
}
