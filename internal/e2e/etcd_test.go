package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// mustReplica starts a control plane on :0 whose registry is at meta (etcd)
// with its artifacts in store, as one of several replicas.
func mustReplica(tb testing.TB, meta, store string, set ...func(*app.ControlPlaneConfig)) *app.ControlPlane {
	tb.Helper()
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir = filepath.Join(tb.TempDir(), "data")
	cfg.Listen = "127.0.0.1:0"
	cfg.Meta, cfg.Store = meta, store
	cfg.AdminToken = adminToken
	for _, f := range set {
		f(&cfg)
	}
	cp := app.NewControlPlane(cfg, quietLogger(tb).With("proc", "control-plane"))
	if err := cp.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cp.Close(context.Background()) })
	addScorerToken(tb, cp)
	return cp
}

// Two control planes on one etcd cluster and one S3 bucket: a version pushed
// and promoted through one reaches a scorer that follows the other. With two
// etcd members of three down, a promotion is refused with 503 and says why,
// while reads and scoring go on; with the members back, promotions work again.
// Dashboard sessions live in etcd too.
func TestTwoControlPlanesOnEtcdAndS3(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 3)
	gw := testutil.MustS3(t, "models")
	store := gw.StoreURL("models", "ha", "")
	a := mustReplica(t, cluster.URL("e2e"), store)
	b := mustReplica(t, cluster.URL("e2e"), store)
	ca, cb := adminClient(a.URL()), adminClient(b.URL())

	mustPush(t, ca, testutil.MustModel(t, 1))
	mustPush(t, ca, testutil.MustModel(t, 2))
	if _, err := cb.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatalf("promote through the other replica: %v", err)
	}
	sc := MustScorer(t, b.URL())
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1 on the scorer", 20*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 1 })
	// The scorer follows b; the promotion is made through a.
	if _, err := ca.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2 on the scorer that follows the other replica", 20*time.Second, func() bool {
		return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 2
	})

	// A browser signed in on one replica is signed in on the other, and on a
	// replica started since; signing out on one signs out on all.
	cookie := signInOn(t, a.URL())
	if code := sessionStatus(t, b.URL(), cookie); code != http.StatusOK {
		t.Fatalf("the session on the other replica: %d", code)
	}
	c := mustReplica(t, cluster.URL("e2e"), store)
	if code := sessionStatus(t, c.URL(), cookie); code != http.StatusOK {
		t.Fatalf("the session on a replica started since: %d", code)
	}
	signOutOn(t, b.URL(), cookie)
	if code := sessionStatus(t, a.URL(), cookie); code != http.StatusUnauthorized {
		t.Fatalf("the session after signing out on another replica: %d", code)
	}

	cluster.Kill(0)
	cluster.Kill(1)
	var err error
	waitFor(t, "promotions to be refused without quorum", 20*time.Second, func() bool {
		_, err = ca.Promote(ctx, "calling-score", wire.AliasBody{Version: 1})
		return err != nil
	})
	if client.StatusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("a promotion without quorum: %v (status %d), want 503 naming etcd", err, client.StatusOf(err))
	}
	if d, err := cb.Deployment(ctx, "calling-score"); err != nil || d.Production == nil || d.Production.Version != 2 {
		t.Fatalf("a read without quorum: %+v %v", d, err)
	}
	if r := score(hc, sc.URL(), testutil.Row(0.1)); r.status != http.StatusOK || r.resp.Version != 2 {
		t.Fatalf("scoring without quorum: %+v", r)
	}

	cluster.Start(0)
	cluster.Start(1)
	waitFor(t, "promotions to work again", 30*time.Second, func() bool {
		_, err := cb.Promote(ctx, "calling-score", wire.AliasBody{Version: 1})
		return err == nil
	})
	waitFor(t, "v1 on the scorer again", 20*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 1 })
}

// signInOn signs a browser in on a control plane with the admin token and
// returns its session cookie.
func signInOn(t *testing.T, url string) *http.Cookie {
	t.Helper()
	resp, err := http.Post(url+"/ui/login", "application/json", strings.NewReader(`{"token":"`+adminToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: %s", resp.Status)
	}
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	t.Fatal("sign in set no session cookie")
	return nil
}

// sessionStatus asks a control plane who the cookie signs in.
func sessionStatus(t *testing.T, url string, cookie *http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/ui/session", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// signOutOn signs the cookie's browser out, with its CSRF token.
func signOutOn(t *testing.T, url string, cookie *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/ui/session", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info api.SessionInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodPost, url+"/ui/logout", nil)
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", info.CSRF)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign out: %s", resp.Status)
	}
}

// leaderOf asks a replica which replica runs the monitor.
func leaderOf(t *testing.T, url string) wire.LeaderInfo {
	t.Helper()
	li, err := adminClient(url).Leader(context.Background())
	if err != nil || li == nil {
		return wire.LeaderInfo{}
	}
	return *li
}

// The monitor runs on exactly one replica, elected in etcd, and every replica
// says which; reports a scorer sends to another replica reach it. When it
// stops, another replica takes the monitor over within 10 s, the reports go
// there, and a bad version promoted afterwards is still rolled back.
func TestTheMonitorRunsOnTheElectedReplica(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 3)
	store := "file://" + filepath.Join(t.TempDir(), "artifacts")
	fast := func(cfg *app.ControlPlaneConfig) {
		cfg.MonitorWindow, cfg.EvalInterval = 3*time.Second, 100*time.Millisecond
	}
	a := mustReplica(t, cluster.URL("elect"), store, fast)
	b := mustReplica(t, cluster.URL("elect"), store, fast)
	var leader, other *app.ControlPlane
	waitFor(t, "one replica to lead the monitor", 10*time.Second, func() bool {
		la, lb := leaderOf(t, a.URL()), leaderOf(t, b.URL())
		switch {
		case la.Monitor == "" || la.Monitor != lb.Monitor || la.Leading == lb.Leading:
			return false
		case la.Leading && la.Monitor == a.URL():
			leader, other = a, b
		case lb.Leading && lb.Monitor == b.URL():
			leader, other = b, a
		default:
			return false
		}
		return true
	})

	cl := adminClient(other.URL())
	mustPush(t, cl, testutil.MustModel(t, 1))
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: testutil.NaNModel(t).Path}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPolicy(ctx, "calling-score", wire.PolicyBody{MinSamples: ptr(int64(20)), FailureLimit: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	// The scorer follows, and reports to, the replica that does not run the
	// monitor.
	sc := fastScorer(t, other.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{sc.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	fleet := func(url string) int {
		nodes, err := adminClient(url).Fleet(ctx)
		if err != nil {
			return -1
		}
		return len(nodes)
	}
	waitFor(t, "the scorer's reports to reach the monitor's replica", 20*time.Second, func() bool { return fleet(leader.URL()) == 1 })
	if n := fleet(other.URL()); n != 1 {
		t.Fatalf("the fleet as the other replica shows it: %d nodes, want the monitor's 1", n)
	}

	leader.Close(ctx)
	waitFor(t, "the other replica to take the monitor over", 10*time.Second, func() bool {
		li := leaderOf(t, other.URL())
		return li.Leading && li.Monitor == other.URL()
	})
	waitFor(t, "reports to reach the new monitor", 20*time.Second, func() bool { return fleet(other.URL()) == 1 })
	time.Sleep(2 * time.Second) // traffic on v1 that the next version is compared with

	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2, Reason: "looks fine"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new monitor to roll the bad version back", 20*time.Second, func() bool {
		m, err := cl.Model(ctx, "calling-score")
		return err == nil && m.Production == 1
	})
	evs, err := cl.Events(ctx, "calling-score", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Kind != registry.EventAutoRollback || last.From != 2 || last.To != 1 {
		t.Fatalf("last event %+v, want the monitor's rollback from v2 to v1", last)
	}
}
