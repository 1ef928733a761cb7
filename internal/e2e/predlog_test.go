package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// logScorer starts a scorer node on :0 following cpURL that logs as set says
// (shipping often, retrying soon).
func logScorer(t *testing.T, cpURL string, set func(*app.ScorerConfig)) *app.Scorer {
	t.Helper()
	cfg := app.DefaultScorerConfig()
	cfg.ControlPlane, cfg.Listen, cfg.GRPCListen = cpURL, "127.0.0.1:0", ""
	cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
	cfg.Token = nodeToken(t, cpURL)
	cfg.Log.Rate, cfg.Log.Interval, cfg.Log.MaxBackoff = 1, 50*time.Millisecond, 200*time.Millisecond
	if set != nil {
		set(&cfg)
	}
	s := app.NewScorer(cfg, quietLogger(t).With("proc", "scorer"))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// logged reads a model's log back through the export API, by request id.
func logged(t *testing.T, cl *client.Client, o client.ExportOptions) map[string]predlog.ExportRow {
	t.Helper()
	out := map[string]predlog.ExportRow{}
	if _, err := cl.Export(context.Background(), "calling-score", o, func(r predlog.ExportRow) error {
		out[r.RequestID] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func postFeedback(t *testing.T, hc *http.Client, url, body string) int {
	t.Helper()
	resp, err := hc.Post(url+"/v1/feedback", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric reads one series of a /metrics page (0 when absent).
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(get(t, url+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func TestPredictionLogRowsAndOutcomesReachTheBlobStore(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	m := testutil.MustModel(t, 1)
	mustPush(t, cl, m)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	// A join of 4 answers forgets the first requests long before their
	// feedback comes: the log still takes it, as it would hours later.
	sc := logScorer(t, cp.URL(), func(c *app.ScorerConfig) { c.FeedbackCapacity = 4 })
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 1 })

	start := time.Now().UTC()
	type sent struct {
		row   []float32
		key   string
		score float32
	}
	answers := map[string]sent{}
	var ids []string
	for i := range 20 {
		row := testutil.Row(float32(i) / 20)
		key := fmt.Sprint("user-", i)
		r := scoreBody(hc, sc.URL(), map[string]any{"features": row, "key": key, "budget_ms": 10000})
		if r.err != nil || r.status != 200 || r.resp.Source != "model" || r.resp.RequestID == "" {
			t.Fatalf("score %d: %+v", i, r)
		}
		answers[r.resp.RequestID] = sent{row, key, *r.resp.Score}
		ids = append(ids, r.resp.RequestID)
	}
	// Outcomes for the even requests, the first of them forgotten by the join.
	for i := 0; i < 20; i += 2 {
		if code := postFeedback(t, hc, sc.URL(), fmt.Sprintf(`{"request_id":%q,"outcome":%g}`, ids[i], float64(i)/40)); code != 204 {
			t.Fatalf("feedback for request %d: %d", i, code)
		}
	}
	// A second feedback for an id the join still holds answered is refused.
	if code := postFeedback(t, hc, sc.URL(), fmt.Sprintf(`{"request_id":%q,"outcome":0.5}`, ids[18])); code != 404 {
		t.Errorf("a second feedback: %d, want 404", code)
	}

	var rows map[string]predlog.ExportRow
	waitFor(t, "every row and outcome exported", 20*time.Second, func() bool {
		rows = logged(t, cl, client.ExportOptions{Since: start})
		joined := 0
		for _, r := range rows {
			if r.HasOutcome {
				joined++
			}
		}
		return len(rows) >= 20 && joined == 10
	})
	for i, id := range ids {
		r, ok := rows[id]
		a := answers[id]
		switch {
		case !ok:
			t.Fatalf("request %d (%s) not in the log", i, id)
		case r.Model != "calling-score" || r.Version != 1 || r.Arm != scorerapi.ArmProduction || r.Source != "model" || r.RoutingKey != a.key:
			t.Errorf("request %d logged as %+v", i, r.Row)
		case !slices.Equal(r.Features, a.row) || float32(r.Answer) != a.score:
			t.Errorf("request %d: features or answer differ: %v %v, sent %v %v", i, r.Features, r.Answer, a.row, a.score)
		case r.Time.Before(start.Add(-time.Second)) || r.Time.After(time.Now().Add(time.Second)):
			t.Errorf("request %d logged at %s", i, r.Time)
		case r.HasOutcome != (i%2 == 0) || (r.HasOutcome && r.Outcome != float64(i)/40):
			t.Errorf("request %d: outcome %v %v", i, r.HasOutcome, r.Outcome)
		}
	}
	only := logged(t, cl, client.ExportOptions{Since: start, WithOutcomesOnly: true})
	if len(only) != 10 {
		t.Errorf("--with-outcomes-only exports %d rows, want the 10 with outcomes", len(only))
	}
	// The files are Parquet, by model and hour, in the control plane's blob store.
	var files []string
	filepath.WalkDir(cp.Config.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && regexp.MustCompile(`/logs/calling-score/dt=\d{4}-\d\d-\d\d/hr=\d\d/[0-9a-f]+\.parquet$`).MatchString(p) {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("no logs/calling-score/dt=…/hr=…/*.parquet under %s", cp.Config.DataDir)
	}
	if b, _ := os.ReadFile(files[0]); len(b) < 8 || string(b[:4]) != "PAR1" {
		t.Errorf("%s is not Parquet", files[0])
	}
	if n := metric(t, sc.URL(), `modelops_predlog_shipped_total{kind="row"}`); n < 20 {
		t.Errorf("modelops_predlog_shipped_total{kind=\"row\"} = %v, want at least 20", n)
	}
}

func TestPredictionLogAtZeroLogsNothing(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	mustPush(t, cl, testutil.MustModel(t, 1))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	// Every model at 1 but this one, at 0.
	sc := logScorer(t, cp.URL(), func(c *app.ScorerConfig) { c.Log.Rates = map[string]float64{"calling-score": 0} })
	hc := &http.Client{Timeout: 10 * time.Second}
	for range 50 {
		if r := score(hc, sc.URL(), testutil.Row(0.2)); r.status != 200 {
			t.Fatalf("score: %+v", r)
		}
	}
	if err := sc.Log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := logged(t, cl, client.ExportOptions{}); len(rows) != 0 {
		t.Errorf("sampling at 0 logged %d rows", len(rows))
	}
	if n := metric(t, sc.URL(), `modelops_predlog_rows_sampled_total{model="calling-score"}`); n != 0 {
		t.Errorf("sampled %v rows at 0", n)
	}
}

func TestPredictionLogOutlivesAnOutageWithinItsBound(t *testing.T) {
	ctx := context.Background()
	cp := MustControlPlane(t)
	cfg := cp.Config
	cfg.Listen = strings.TrimPrefix(cp.URL(), "http://")
	cl := adminClient(cp.URL())
	mustPush(t, cl, testutil.MustModel(t, 1))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	sc := logScorer(t, cp.URL(), func(c *app.ScorerConfig) { c.Log.MaxBytes = 1 << 20 })
	hc := &http.Client{Timeout: 30 * time.Second}
	waitFor(t, "v1", 10*time.Second, func() bool { return score(hc, sc.URL(), testutil.Row(0.1)).resp.Version == 1 })
	waitFor(t, "the first row shipped", 10*time.Second, func() bool { n, _ := sc.Log.Buffered(); return n == 0 })
	before := len(logged(t, cl, client.ExportOptions{}))

	// The control plane goes away; the scorer keeps answering and buffering.
	cp.Close(ctx)
	many := func(n int, v float32) {
		t.Helper()
		rows := make([][]float32, n)
		for i := range rows {
			rows[i] = testutil.Row(v)
		}
		if r := scoreBody(hc, sc.URL(), map[string]any{"rows": rows, "budget_ms": 20000}); r.status != 200 {
			t.Fatalf("score %d rows with the control plane away: %+v", n, r)
		}
	}
	many(500, 0.25)
	waitFor(t, "a failed shipment", 10*time.Second, func() bool {
		return metric(t, sc.URL(), "modelops_predlog_ship_failures_total") > 0
	})
	if n, b := sc.Log.Buffered(); n != 500 || b > 1<<20 {
		t.Fatalf("buffered %d records (%d bytes) with the control plane away, want 500", n, b)
	}
	if d := metric(t, sc.URL(), `modelops_predlog_dropped_total{reason="overflow"}`); d != 0 {
		t.Fatalf("dropped %v within the bound", d)
	}
	// Beyond the bound, the oldest go, counted.
	for i := range 3 {
		many(1000, 0.5+float32(i)/10)
	}
	dropped := metric(t, sc.URL(), `modelops_predlog_dropped_total{reason="overflow"}`)
	n, b := sc.Log.Buffered()
	if dropped < 500 || b > 1<<20 || float64(n)+dropped != 3500 {
		t.Fatalf("after 3,500 rows: %d buffered (%d bytes), %v dropped", n, b, dropped)
	}

	// The control plane comes back where it was; the buffer ships.
	cp2 := app.NewControlPlane(cfg, quietLogger(t).With("proc", "control-plane"))
	waitFor(t, "the control plane's port free again", 10*time.Second, func() bool { return cp2.Open(ctx) == nil })
	t.Cleanup(func() { cp2.Close(ctx) })
	var rows map[string]predlog.ExportRow
	waitFor(t, "the buffer shipped", 30*time.Second, func() bool {
		rows = logged(t, cl, client.ExportOptions{})
		return len(rows)-before == n
	})
	// What was dropped is the oldest: the 500 rows of the first request, and
	// none of the last request's.
	byFirst := map[float32]int{}
	for _, r := range rows {
		byFirst[r.Features[0]]++
	}
	if byFirst[testutil.Row(0.25)[0]] != 0 || byFirst[testutil.Row(0.7)[0]] != 1000 {
		t.Errorf("rows kept by request: %v; want the oldest dropped", byFirst)
	}
}

// TestPredictionLogKilledScorerLosesAtMostOneBatch runs the scorer binary,
// sends it traffic logged at rate 1, kills it with SIGKILL, and counts what
// the control plane stored against what was answered.
func TestPredictionLogKilledScorerLosesAtMostOneBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("short: builds and runs the scorer binary")
	}
	ctx := context.Background()
	cp := MustControlPlane(t)
	cl := adminClient(cp.URL())
	mustPush(t, cl, testutil.MustModel(t, 1))
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "scorer")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/scorer").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const batch = 50
	cmd := exec.Command(bin, "--control-plane", cp.URL(), "--listen", "127.0.0.1:0", "--grpc-listen", "", "--node", "killed-node",
		"--cache-dir", filepath.Join(t.TempDir(), "cache"), "--log-sample", "1", "--log-batch", strconv.Itoa(batch), "--log-interval", "20ms")
	cmd.Env = append(os.Environ(), "MODELOPS_SCORER_TOKEN="+nodeToken(t, cp.URL()))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "predlog") {
				t.Log(sc.Text())
			}
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var url string
	select {
	case url = <-urls:
	case <-time.After(30 * time.Second):
		t.Fatal("the scorer never said where it listens")
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "v1 on the scorer", 20*time.Second, func() bool { return score(hc, url, testutil.Row(0.1)).resp.Version == 1 })
	waitFor(t, "the first rows shipped", 10*time.Second, func() bool { return len(logged(t, cl, client.ExportOptions{})) > 0 })
	// Traffic the control plane keeps up with (one shipment lasts less than a
	// batch's worth of rows): about 200 rows a second.
	for i := range 400 {
		if r := score(hc, url, testutil.Row(float32(i)/400)); r.status != 200 {
			t.Fatalf("score: %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Every answer so far was sampled (rate 1) before it was sent.
	answered := int(metric(t, url, `modelops_predlog_rows_sampled_total{model="calling-score"}`))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// A shipment in flight when the scorer died may still land: wait until the
	// count holds still.
	stored, last := 0, -1
	waitFor(t, "the stored count to settle", 10*time.Second, func() bool {
		last, stored = stored, len(logged(t, cl, client.ExportOptions{}))
		time.Sleep(200 * time.Millisecond)
		return stored == last
	})
	if answered < 400 || stored > answered || answered-stored > batch {
		t.Fatalf("answered %d rows, %d stored: lost %d, more than one batch of %d", answered, stored, answered-stored, batch)
	}
	t.Logf("answered %d, stored %d, lost %d (batch %d)", answered, stored, answered-stored, batch)
}
