package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// reportPlane is a control plane with auth and a monitor over a registry with
// calling-score v1 and v2 pushed, v1 in production (reports per second and
// token: reportRate, if given); it answers the admin client, the monitor and
// the base URL.
func reportPlane(t *testing.T, reportRate ...float64) (*client.Client, *monitor.Monitor, string) {
	t.Helper()
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	if len(reportRate) > 0 {
		cp.ReportsPerSecond, cp.ReportBurst = reportRate[0], int(reportRate[0])
	}
	cp.RequireAuth = true
	cp.Monitor = monitor.New(reg, discard)
	url := MustServe(t, cp.Handler())
	secret := registry.NewTokenSecret()
	if _, err := reg.AddToken("alice", registry.RoleAdmin, secret); err != nil {
		t.Fatal(err)
	}
	admin := client.New(url)
	admin.Token = secret
	ctx := context.Background()
	for seed := uint64(1); seed <= 2; seed++ {
		m := testutil.MustModel(t, seed)
		if _, err := admin.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: m.Path, Card: m.Card}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	return admin, cp.Monitor, url
}

// sendReport posts a report with a token and answers the status and body.
func sendReport(t *testing.T, url, token string, r any) (int, string, http.Header) {
	t.Helper()
	body, _ := json.Marshal(r)
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/reports", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// errorsWindow is a second of v on the champion arm: n requests, bad of them
// errors.
func errorsWindow(v int, n, bad int64) report.Window {
	w := report.Window{Version: v, Arm: "champion", Requests: n, Rows: n, Errors: bad,
		Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins)}
	w.Latency[2] = n
	w.Prediction[5] = n
	return w
}

func nodeReport(node string, ws ...report.Window) report.Report {
	return report.Report{Node: node, Ready: true, Interval: 1, Models: []report.ModelReport{{Model: "calling-score", Windows: ws}}}
}

// A scorer token reports for one node only: bound by its first report, or
// named when made. Another node's name, an admin or viewer token, and a
// version not deployed are refused, and the real node's entry is untouched.
func TestForgedReportsAreRefused(t *testing.T) {
	ctx := context.Background()
	admin, mon, url := reportPlane(t)
	real, err := admin.CreateToken(ctx, "node-a", registry.RoleScorer)
	if err != nil {
		t.Fatal(err)
	}
	thief, err := admin.CreateToken(ctx, "node-b", registry.RoleScorer)
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := sendReport(t, url, real.Secret, nodeReport("a", errorsWindow(1, 100, 0))); status != http.StatusNoContent {
		t.Fatalf("the real node's report: %d %s", status, body)
	}
	// Its token is now bound to a, in the registry.
	toks, _ := admin.Tokens(ctx)
	for _, tk := range toks {
		if tk.ID == real.ID && tk.Node != "a" {
			t.Fatalf("token %s is bound to %q, want a", tk.ID, tk.Node)
		}
	}
	forged := nodeReport("a", errorsWindow(1, 100, 100))
	forged.Ready = false
	forged.Models[0].LoadError = "fake"
	status, body, _ := sendReport(t, url, thief.Secret, forged)
	if status != http.StatusForbidden || !strings.Contains(body, "is bound to token "+real.ID) {
		// The thief's token bound itself to nothing: node a is another's.
		t.Fatalf("another token reporting as node a: %d %s, want 403", status, body)
	}
	if status, body, _ := sendReport(t, url, thief.Secret, nodeReport("b", errorsWindow(1, 10, 0))); status != http.StatusNoContent {
		t.Fatalf("the second node's own report: %d %s", status, body)
	}
	status, body, _ = sendReport(t, url, thief.Secret, forged)
	if status != http.StatusForbidden || !strings.Contains(body, `bound to node \"b\"`) {
		t.Fatalf("a token bound to b reporting as a: %d %s, want 403 naming b", status, body)
	}
	// An undeployed version (v2 is pushed, not promoted) and an unknown one.
	for _, v := range []int{2, 20000} {
		status, body, _ = sendReport(t, url, real.Secret, nodeReport("a", errorsWindow(v, 100, 100)))
		if status != http.StatusForbidden || !strings.Contains(body, fmt.Sprintf("v%d is not deployed", v)) {
			t.Fatalf("a report for v%d: %d %s, want 403", v, status, body)
		}
	}
	if status, body, _ := sendReport(t, url, real.Secret, report.Report{Node: "a", Models: []report.ModelReport{{Model: "made-up", Windows: []report.Window{errorsWindow(1, 1, 1)}}}}); status != http.StatusForbidden {
		t.Fatalf("a report for a model not in the registry: %d %s", status, body)
	}
	// Admin and viewer tokens do not report.
	viewer, _ := admin.CreateToken(ctx, "dash", registry.RoleViewer)
	for who, secret := range map[string]string{"admin": admin.Token, "viewer": viewer.Secret} {
		if status, body, _ := sendReport(t, url, secret, nodeReport("c", errorsWindow(1, 1, 0))); status != http.StatusForbidden {
			t.Fatalf("a report with the %s token: %d %s, want 403", who, status, body)
		}
	}
	// A token made for a node is bound from the start.
	named, err := admin.CreateTokenFor(ctx, wire.TokenBody{Name: "node-d", Role: registry.RoleScorer, Node: "d"})
	if err != nil || named.Node != "d" {
		t.Fatalf("token for node d: %+v %v", named, err)
	}
	if status, body, _ := sendReport(t, url, named.Secret, nodeReport("e")); status != http.StatusForbidden || !strings.Contains(body, `bound to node \"d\"`) {
		t.Fatalf("a token made for d reporting as e: %d %s", status, body)
	}
	fleet := mon.Fleet()
	var a *monitor.NodeState
	for i := range fleet {
		if fleet[i].Node == "a" {
			a = &fleet[i]
		}
	}
	if len(fleet) != 2 || a == nil || !a.Ready || len(a.LoadErrors) > 0 {
		t.Fatalf("fleet after the forgeries: %+v, want a (ready, no load error) and b", fleet)
	}
	h, err := mon.Health(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	for _, arm := range h.Arms {
		if arm.Version != 1 || arm.ErrorRate != 0 {
			t.Fatalf("health after the forgeries: %+v, want v1 without errors", h.Arms)
		}
	}
}

// Sizes past the limits are refused with 413 or 400 naming the limit, and a
// token sending faster than its rate gets 429 with Retry-After.
func TestReportLimits(t *testing.T) {
	ctx := context.Background()
	admin, mon, url := reportPlane(t)
	node, _ := admin.CreateToken(ctx, "node-a", registry.RoleScorer)
	many := report.Report{Node: "a"}
	for i := range monitor.MaxReportModels + 1 {
		many.Models = append(many.Models, report.ModelReport{Model: fmt.Sprintf("m%d", i)})
	}
	bins := errorsWindow(1, 10, 0)
	bins.Latency = make([]int64, 500)
	arms := nodeReport("a")
	for i := range monitor.MaxArmsPerVersion + 1 {
		w := errorsWindow(1, 1, 0)
		w.Arm = "arm" + strings.Repeat("x", i)
		arms.Models[0].Windows = append(arms.Models[0].Windows, w)
	}
	feats := errorsWindow(1, 10, 0)
	feats.Features = make([][]int64, 5000)
	negative := errorsWindow(1, 10, -5)
	refusals := errorsWindow(1, 10, 0)
	refusals.Refusals = map[string]int64{}
	for i := range 20000 {
		refusals.Refusals[fmt.Sprintf("reason-%06d", i)] = 1
	}
	longRefusal := errorsWindow(1, 10, 0)
	longRefusal.Refusals = map[string]int64{strings.Repeat("r", 500): 1}
	negRefusal := errorsWindow(1, 10, 0)
	negRefusal.Refusals = map[string]int64{"queue_full": -3}
	moreErrors := errorsWindow(1, 10, 11)
	huge := nodeReport("a")
	huge.Models[0].LoadError = strings.Repeat("x", 2<<20)
	for _, c := range []struct {
		name   string
		r      report.Report
		status int
		says   string
	}{
		{"body", huge, http.StatusRequestEntityTooLarge, "larger than 1048576 bytes"},
		{"models", many, http.StatusRequestEntityTooLarge, fmt.Sprintf("at most %d", monitor.MaxReportModels)},
		{"bins", nodeReport("a", bins), http.StatusRequestEntityTooLarge, "500 bins; at most 64"},
		{"arms", arms, http.StatusRequestEntityTooLarge, "more than 4 windows"},
		{"features", nodeReport("a", feats), http.StatusRequestEntityTooLarge, "5000 feature histograms; at most 1024"},
		{"negative", nodeReport("a", negative), http.StatusBadRequest, "errors -5"},
		{"refusals", nodeReport("a", refusals), http.StatusRequestEntityTooLarge, "20000 refusal reasons; at most 16"},
		{"long refusal", nodeReport("a", longRefusal), http.StatusBadRequest, "refusal reason"},
		{"negative refusal", nodeReport("a", negRefusal), http.StatusBadRequest, "refusal reason"},
		{"errors above requests", nodeReport("a", moreErrors), http.StatusBadRequest, "errors 11 of 10 requests"},
		{"node", report.Report{Node: "evil\x1b[2J"}, http.StatusBadRequest, "control characters"},
	} {
		status, body, _ := sendReport(t, url, node.Secret, c.r)
		if status != c.status || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, status, truncate(body, 300), c.status, c.says)
		}
	}
	if u := mon.Usage(); u.Nodes != 0 || u.Series != 0 {
		t.Fatalf("refused reports left %+v behind", u)
	}
	toks, _ := admin.Tokens(ctx)
	for _, tk := range toks {
		if tk.Node != "" {
			t.Fatalf("a refused report bound token %s to %q", tk.Name, tk.Node)
		}
	}
	// The rate: a burst goes through, then 429 with Retry-After.
	var last int
	var hdr http.Header
	for range 200 {
		last, _, hdr = sendReport(t, url, node.Secret, nodeReport("a", errorsWindow(1, 1, 0)))
		if last == http.StatusTooManyRequests {
			break
		}
	}
	if last != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("200 reports at once: last %d, Retry-After %q; want 429 with Retry-After", last, hdr.Get("Retry-After"))
	}
	// Another token has its own rate.
	other, _ := admin.CreateToken(ctx, "node-b", registry.RoleScorer)
	if status, body, _ := sendReport(t, url, other.Secret, nodeReport("b", errorsWindow(1, 1, 0))); status != http.StatusNoContent {
		t.Fatalf("another token while the first is limited: %d %s", status, body)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// A flood of large reports from many nodes keeps the monitor within its
// budget, and /series answers a bounded body.
func TestReportFloodStaysWithinTheBudget(t *testing.T) {
	ctx := context.Background()
	admin, mon, url := reportPlane(t, 1000)
	const budget = 1 << 20
	mon.MaxBytes = budget
	clock := time.Unix(2_000_000, 0)
	mon.Now = func() time.Time { return clock }
	var tokens []string
	for i := range 20 {
		tk, err := admin.CreateToken(ctx, fmt.Sprintf("node-%d", i), registry.RoleScorer)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tk.Secret)
	}
	// The largest report the limits let through for v1: every arm, every
	// fallback reason, the longest texts.
	big := func(node string) report.Report {
		r := nodeReport(node)
		for _, arm := range []string{"champion", "challenger", "shadow", "other"} {
			w := errorsWindow(1, 1000, 0)
			w.Arm = arm
			w.ShadowDiff = make([]int64, len(report.ShadowDiffEdges)+1)
			w.Fallbacks = map[string]int64{}
			for f := range monitor.MaxFallbackReasons {
				w.Fallbacks[fmt.Sprintf("%02d%s", f, strings.Repeat("r", 60))] = 1
			}
			r.Models[0].Windows = append(r.Models[0].Windows, w)
		}
		r.Models[0].LoadError = strings.Repeat("e", monitor.MaxText)
		return r
	}
	for sec := range 300 {
		clock = clock.Add(time.Second)
		for i, tk := range tokens {
			if status, body, _ := sendReport(t, url, tk, big(fmt.Sprintf("n%d", i))); status != http.StatusNoContent {
				t.Fatalf("second %d, node %d: %d %s", sec, i, status, body)
			}
		}
		if u := mon.Usage(); u.Bytes > budget {
			t.Fatalf("after %d s of reports the monitor holds %+v, past its budget of %d bytes", sec, u, budget)
		}
	}
	u := mon.Usage()
	if u.Points >= 4*300 || u.Nodes != 20 {
		t.Fatalf("the monitor holds %+v: want fewer points than a second's per series (the oldest dropped for the budget), 20 nodes", u)
	}
	// The dashboard's chart over 15 minutes at its finest step.
	status, body := get(t, admin, url+"/api/v1/models/calling-score/series?span=15m&step=2s")
	if status != http.StatusOK || len(body) > 4<<20 {
		t.Fatalf("/series: %d, %d bytes; want 200 within 4 MiB", status, len(body))
	}
}

func get(t *testing.T, cl *client.Client, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
