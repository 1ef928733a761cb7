package logship

import (
	"fmt"
	"math"
	"syscall"
	"testing"
	"time"
)

func answer(id string, rows int) *Answer {
	flat := make([]float32, rows*39)
	scores := make([]float32, rows)
	for i := range flat {
		flat[i] = float32(i%39) / 39
	}
	return &Answer{Model: "calling-score", Version: 1, Arm: "champion", Source: "model", RequestID: id, Flat: flat, Rows: rows, Scores: scores}
}

// The sample's share is the rate, and the same hash that chose a row says so
// again when its outcome arrives.
func TestSamplingFollowsTheRateAndIsRecognisedLater(t *testing.T) {
	l := New(Config{Rate: 0.1, Rates: map[string]float64{"other": 0}, MaxBytes: 1 << 30}, nil, nil)
	const n = 20000
	for i := range n {
		l.Record(answer(fmt.Sprintf("%016x", i*7919), 1))
	}
	got, _ := l.Buffered()
	if math.Abs(float64(got)-0.1*n) > 4*math.Sqrt(0.1*0.9*n) {
		t.Errorf("sampled %d of %d at 0.1", got, n)
	}
	l.mu.Lock()
	for _, r := range l.queue[l.head:] {
		if !l.Sampled("calling-score", r.row.RequestID, 0) {
			t.Fatalf("row %s logged but not recognised as sampled", r.row.RequestID)
		}
	}
	l.mu.Unlock()
	o := answer("00000000000000aa", 1)
	o.Model = "other"
	for range 100 {
		l.Record(o)
	}
	if n2, _ := l.Buffered(); n2 != got {
		t.Errorf("a model at rate 0 logged %d rows", n2-got)
	}
}

// A full buffer drops its oldest records, counted, and stays within its bytes.
func TestFullBufferDropsTheOldest(t *testing.T) {
	l := New(Config{Rate: 1, MaxBytes: 1 << 20}, nil, nil)
	for i := range 5000 {
		l.Record(answer(fmt.Sprintf("%016x", i), 1))
	}
	n, b := l.Buffered()
	if b > 1<<20 || n >= 5000 || n < 1000 {
		t.Fatalf("%d records, %d bytes buffered", n, b)
	}
	l.mu.Lock()
	first, last := l.queue[l.head].row.RequestID, l.queue[len(l.queue)-1].row.RequestID
	l.mu.Unlock()
	if first != fmt.Sprintf("%016x", 5000-n) || last != fmt.Sprintf("%016x", 4999) {
		t.Errorf("kept %s … %s; want the newest %d", first, last, n)
	}
	recs, from := l.take()
	l.done(from, len(recs))
	if n2, _ := l.Buffered(); n2 != n-len(recs) {
		t.Errorf("after one batch of %d: %d buffered, want %d", len(recs), n2, n-len(recs))
	}
}

// BenchmarkRecord is the scoring path's cost of the prediction log per
// request of one row: at rate 1 every row is logged (a copy of its 39
// features and a short lock), at 0.01 (the default) one in a hundred.
func BenchmarkRecord(b *testing.B) {
	for _, rate := range []float64{1, 0.01} {
		b.Run(fmt.Sprint("rate=", rate), func(b *testing.B) {
			l := New(Config{Rate: rate, MaxBytes: 64 << 20}, nil, nil)
			a := answer("0123456789abcdef", 1)
			b.ReportAllocs()
			before := cpuTime()
			for i := 0; b.Loop(); i++ {
				a.RequestID = ids[i%len(ids)]
				l.Record(a)
				if i%4096 == 0 {
					l.mu.Lock()
					clear(l.queue)
					l.queue, l.head, l.bytes = l.queue[:0], 0, 0
					l.mu.Unlock()
				}
			}
			// On a shared machine wall time measures the neighbours; the
			// process's CPU time (every thread, the collector's too) measures
			// the code.
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var ids = func() []string {
	out := make([]string, 1024)
	for i := range out {
		out[i] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
	}
	return out
}()

// An outcome for an id no join holds is taken only when the id was sampled,
// and left to the join that holds it otherwise.
func TestOutcomesForForgottenRequests(t *testing.T) {
	l := New(Config{Rate: 0.5, MaxBytes: 1 << 20}, nil, nil)
	hook := l.Outcomes("calling-score")
	var sampled, unsampled string
	for i := 0; sampled == "" || unsampled == ""; i++ {
		id := fmt.Sprintf("%016x", i)
		if l.Sampled("calling-score", id, 0) {
			sampled = id
		} else {
			unsampled = id
		}
	}
	if hook(unsampled, []float64{1}, false) || hook("not-an-id", []float64{1}, false) {
		t.Error("took an outcome for an id it never sampled")
	}
	held := false
	l.SetHolder("other", func(id string) bool { return held && id == sampled })
	held = true
	if hook(sampled, []float64{1}, false) {
		t.Error("took an outcome another join holds")
	}
	held = false
	if !hook(sampled, []float64{0.25}, false) {
		t.Error("refused an outcome for a sampled id nobody holds")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.queue) - l.head; n != 1 || l.queue[l.head].outcome.RequestID != sampled || l.queue[l.head].outcome.Outcome != 0.25 {
		t.Errorf("buffered %d records, want the one outcome", n)
	}
}
