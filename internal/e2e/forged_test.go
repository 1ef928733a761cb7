package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/trainer"
	"github.com/modelops/modelops/internal/wire"
)

// The attack of issue 23, replayed on real scorers: a stolen scorer token sends
// reports claiming errors for a freshly promoted version that two scorers
// serve well, and reports as one of them (not ready, failing to load). The
// version stays in production and the real node's entry stands.
func TestForgedReportsDoNotRollBackProduction(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	base := trainer.NewMLP(12, 39, 16, 1)
	for v := 1; v <= 2; v++ { // two close versions: a good promotion
		base.Layers[1].B[0] += 0.02
		data, err := trainer.ExportONNX(base, trainer.ExportMeta{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "m.onnx")
		os.WriteFile(p, data, 0o644)
		if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: p}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.SetPolicy(ctx, "calling-score", wire.PolicyBody{MinSamples: ptr(int64(20)), FailureLimit: ptr(2), MaxP99Ms: ptr(1000.0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	s1, s2 := fastScorer(t, cp.URL()), fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{s1.URL(), s2.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	var victim string
	waitFor(t, "both scorers on v2, reporting", 10*time.Second, func() bool {
		v1, _, _ := s1.Slot.Current()
		v2, _, _ := s2.Slot.Current()
		fleet, _ := cl.Fleet(ctx)
		for _, n := range fleet {
			if n.Address == s1.URL() {
				victim = n.Node
			}
		}
		return v1 == 2 && v2 == 2 && victim != ""
	})

	stolen, err := cl.CreateToken(ctx, "stolen", registry.RoleScorer)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r report.Report) (int, string) {
		body, _ := json.Marshal(r)
		req, _ := http.NewRequest(http.MethodPost, cp.URL()+"/api/v1/reports", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+stolen.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	errors := report.Window{Version: 2, Arm: "champion", Requests: 1000, Rows: 1000, Errors: 1000}
	// Through the monitor's window three times over, evaluated every 100 ms.
	for i := range 90 {
		if status, body := send(report.Report{Node: "evil", Ready: true, Models: []report.ModelReport{{Model: "calling-score", Windows: []report.Window{errors}}}}); status != http.StatusNoContent {
			t.Fatalf("forged report %d for the attacker's own node: %d %s", i, status, body)
		}
		if status, body := send(report.Report{Node: victim, Models: []report.ModelReport{{Model: "calling-score", LoadError: "forged", Windows: []report.Window{errors}}}}); status != http.StatusForbidden {
			t.Fatalf("forged report as %s: %d %s, want 403", victim, status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m, err := cl.Model(ctx, "calling-score")
	if err != nil || m.Production != 2 || len(m.Rejected) > 0 {
		t.Fatalf("after the forged reports: %+v %v; want v2 still in production", m, err)
	}
	evs, _ := cl.Events(ctx, "calling-score", 0, 0)
	for _, e := range evs {
		if e.Kind == registry.EventAutoRollback {
			t.Fatalf("the monitor acted on forged reports: %+v", e)
		}
	}
	fleet, _ := cl.Fleet(ctx)
	for _, n := range fleet {
		if n.Node == victim && (!n.Ready || len(n.LoadErrors) > 0 || n.Address != s1.URL()) {
			t.Fatalf("the real node's entry was overwritten: %+v", n)
		}
	}
	if len(fleet) != 3 || !strings.Contains(fleet[0].Node+fleet[1].Node+fleet[2].Node, "evil") {
		t.Fatalf("fleet %+v: want the two scorers and the attacker's own node", fleet)
	}
}
