package e2e

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelops/modelops/internal/buildinfo"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/scoring"
)

// exported names every modelops_ series the two servers can export, with its
// labels: the control plane's monitor collector and build info, and the
// scorer's registry (answers, refusals, models, build info).
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		monitor.Collector{}.Describe(ch)
		buildinfo.Collector("control-plane").Describe(ch)
		scoring.New(slog.New(slog.DiscardHandler)).Metrics().Registry.Describe(ch)
		close(ch)
	}()
	desc := regexp.MustCompile(`fqName: "([^"]+)".*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)
	out := map[string]map[string]bool{}
	for d := range ch {
		m := desc.FindStringSubmatch(d.String())
		if m == nil || !strings.HasPrefix(m[1], "modelops_") {
			continue
		}
		labels := map[string]bool{"instance": true, "job": true, "le": true}
		for _, part := range append(strings.Split(m[2], ","), strings.Split(m[3], ",")...) {
			name, _, _ := strings.Cut(part, "=")
			labels[strings.TrimSuffix(strings.TrimPrefix(name, "c("), ")")] = true
		}
		out[m[1]] = labels
	}
	return out
}

// Every query of the shipped Grafana dashboard names a series the servers
// export, and every label it groups by or prints is one that series has: a
// renamed metric or label breaks this test, not an operator's dashboard.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "modelops.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/modelops.json: %v", err)
	}
	have := exported(t)
	if len(have) < 20 {
		t.Fatalf("only %d modelops_ series described: %v", len(have), have)
	}
	metricRe := regexp.MustCompile(`\bmodelops_[a-z0-9_]+`)
	byRe := regexp.MustCompile(`by \(([^)]*)\)`)
	legendRe := regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	queries := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			names := metricRe.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("%s: %q names no modelops series", p.Title, q.Expr)
			}
			var labels map[string]bool
			for _, n := range names {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if l, ok := have[strings.TrimSuffix(n, suffix)]; ok && strings.HasSuffix(n, suffix) {
						base, labels = strings.TrimSuffix(n, suffix), l
					}
				}
				if l, ok := have[base]; ok {
					labels = l
				} else {
					t.Errorf("%s: %q queries %s, which neither server exports", p.Title, q.Expr, n)
				}
			}
			if labels == nil {
				continue
			}
			var used []string
			for _, m := range byRe.FindAllStringSubmatch(q.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					used = append(used, strings.TrimSpace(l))
				}
			}
			for _, m := range legendRe.FindAllStringSubmatch(q.LegendFormat, -1) {
				used = append(used, m[1])
			}
			for _, l := range used {
				if !labels[l] {
					t.Errorf("%s: %q uses label %q, which %v does not have", p.Title, q.Expr, l, names)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("the dashboard has %d queries, want the panels of the README", queries)
	}
}
