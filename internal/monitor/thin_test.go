package monitor

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"
)

// Points older than FineFor are thinned to one a minute: each thinned point
// holds exactly the counts of the seconds of its minute, the newer ones stay a
// second apart, and the bytes the budget counts are those of the points kept.
func TestThinningKeepsEveryCountInItsMinute(t *testing.T) {
	m := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := time.Date(2026, 12, 4, 10, 0, 30, 0, time.UTC) // half a minute in: the first minute is partial
	now := start
	m.Now = func() time.Time { return now }
	const seconds = 40 * 60
	k := seriesKey{"m", 1, "champion"}
	for i := range seconds {
		now = start.Add(time.Duration(i) * time.Second)
		w := report.Window{Version: 1, Arm: "champion", Requests: int64(i + 1), Errors: int64(i % 3), Latency: make([]int64, len(report.LatencyBucketsMs)+1)}
		w.Latency[i%len(w.Latency)] = int64(i + 1)
		m.Ingest(report.Report{Node: "n1", Ready: true, Models: []report.ModelReport{{Model: "m", Windows: []report.Window{w}}}})
	}
	ps := m.series[k]
	horizon := now.Add(-FineFor)
	wantReq, wantErr, wantLat := map[time.Time]int64{}, map[time.Time]int64{}, map[time.Time]map[int]int64{}
	for i := range seconds {
		at := start.Add(time.Duration(i) * time.Second)
		key := at
		if at.Before(horizon) {
			key = at.Truncate(time.Minute)
		}
		wantReq[key] += int64(i + 1)
		wantErr[key] += int64(i % 3)
		if wantLat[key] == nil {
			wantLat[key] = map[int]int64{}
		}
		wantLat[key][i%(len(report.LatencyBucketsMs)+1)] += int64(i + 1)
	}
	if len(ps) != len(wantReq) {
		t.Fatalf("%d points, want %d (a minute each before %s, a second each after)", len(ps), len(wantReq), horizon)
	}
	var bytes int64
	thinned := 0
	for _, p := range ps {
		key := p.t
		if p.thinned {
			thinned++
			key = p.t.Truncate(time.Minute)
		} else if p.t.Before(horizon) {
			t.Fatalf("a point of %s, before the horizon %s, is not thinned", p.t, horizon)
		}
		if p.w.Requests != wantReq[key] || p.w.Errors != wantErr[key] {
			t.Fatalf("point %s (thinned %v): %d requests and %d errors, want %d and %d", p.t, p.thinned, p.w.Requests, p.w.Errors, wantReq[key], wantErr[key])
		}
		for b, c := range p.w.Latency {
			if c != wantLat[key][b] {
				t.Fatalf("point %s: latency bucket %d holds %d, want %d", p.t, b, c, wantLat[key][b])
			}
		}
		bytes += p.size
	}
	if thinned != 26 { // 10:00 (from :30) to 10:25, before the horizon at 10:25:29
		t.Fatalf("%d thinned points, want 26", thinned)
	}
	if n := len(ps) - thinned; n != int(FineFor/time.Second)+1 { // both ends
		t.Fatalf("%d points a second, want %d", n, int(FineFor/time.Second)+1)
	}
	var slots int64
	for _, byNode := range m.perNode {
		for _, sl := range byNode {
			slots += int64(len(sl)) * nodeSlotBytes
		}
	}
	if m.retained != bytes+slots {
		t.Fatalf("the budget counts %d bytes; the points hold %d and the node slots %d", m.retained, bytes, slots)
	}
	// Sums over the whole span are what was reported.
	all := m.window(k, start.Add(-time.Second), now)
	if want := int64(seconds * (seconds + 1) / 2); all.Requests != want {
		t.Fatalf("%d requests over the span, want %d", all.Requests, want)
	}
	// Past Retain, even thinned points go.
	m.Retain = 30 * time.Minute
	now = now.Add(time.Second)
	m.Ingest(report.Report{Node: "n1", Ready: true})
	if first := m.series[k][0].t; first.Before(now.Add(-m.Retain)) {
		t.Fatalf("a point of %s is kept past Retain (%s)", first, now.Add(-m.Retain))
	}
}
