package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelops/modelops/internal/trainer"
)

// writeMLP writes a calling-score-shaped model (39 inputs, one sigmoid output)
// to path: a second version to swap with, or with nan a version whose every
// answer is NaN.
func writeMLP(path string, seed uint64, nan bool) error {
	m := trainer.NewMLP(seed, 39, 128, 64, 1)
	if nan {
		m = trainer.NewMLP(seed, 39, 8, 1)
		m.Layers[1].B[0] = float32(math.NaN())
	}
	onnx, err := trainer.ExportONNX(m, trainer.ExportMeta{GraphName: "bench"})
	if err != nil {
		return err
	}
	return os.WriteFile(path, onnx, 0o644)
}

// swapsPerWindow is how many promotions one swap window holds; the steady gaps
// between windows last as long.
const swapsPerWindow = 2

type swapResult struct {
	swaps int
	// Latencies of requests sent inside the swap windows and outside them; the
	// failures and fallbacks of the whole run.
	duringP99, steadyP99           time.Duration
	duringRequests, steadyRequests int
	// windowsOver and gapsOver count the swap windows and the steady gaps whose
	// own p99 passes 1.5× the steady p99, of windows and gaps in all: a stall
	// of the machine falls on either kind alike, a cost of swapping on windows.
	windowsOver, gapsOver, windows, gaps int
	failed, fallbacks                    int
	reasons                              map[string]int
	firstError                           string
	took                                 time.Duration
	// The scorer process's resident set size and OS threads before the swaps
	// and after, each read after the load has been quiet for a while.
	rssBefore, rssAfter         float64
	threadsBefore, threadsAfter int
	// rssTrend is the resident set size after every 10 swaps: a leak would
	// climb with the swaps.
	rssTrend []float64
}

func (s swapResult) print(o options, rate float64) {
	fmt.Printf("\nhot swap: %d promotions, one every %s in windows of %d, each followed by a steady gap as long, %s in all at %.0f requests/s: %d requests inside the windows, %d outside; p99 over 1.5× the steady p99 in %d of %d windows and %d of %d gaps\n",
		s.swaps, o.swapEvery, swapsPerWindow, s.took.Round(time.Millisecond), rate, s.duringRequests, s.steadyRequests, s.windowsOver, s.windows, s.gapsOver, s.gaps)
	if s.firstError != "" {
		fmt.Printf("first failure: %s\n", s.firstError)
	}
	if s.fallbacks > 0 {
		fmt.Printf("fallback answers by reason: %v\n", s.reasons)
	}
	trend := make([]string, len(s.rssTrend))
	for i, r := range s.rssTrend {
		trend[i] = fmt.Sprintf("%.1f", r/1e6)
	}
	fmt.Printf("scorer RSS (MB) after every 10 swaps: %s; OS threads %d → %d\n", strings.Join(trend, " "), s.threadsBefore, s.threadsAfter)
}

// settledRSS reads a process's memory after its load has been quiet for a
// while (its collector and scavenger run meanwhile): the least of a few
// readings.
func settledRSS(p *proc) (float64, int) {
	rss, threads := math.Inf(1), 0
	for i := 0; i < 5; i++ {
		time.Sleep(400 * time.Millisecond)
		r, t := p.rss()
		rss, threads = min(rss, r), t
	}
	return rss, threads
}

// swapBudget is the latency budget the hot-swap run's requests ask for: long
// enough that a request the overloaded machine holds up is not answered from
// the rules for its lateness (p99 judges latency), so that every fallback
// counted is one a swap caused.
const swapBudget = "10000"

// bytesTrimmedClone is a copy of a JSON object's text without its closing
// brace, for fields to be appended.
func bytesTrimmedClone(object []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSpace(bytes.Clone(object)), []byte("}"))
}

// hotSwap starts a fresh scorer node on the control plane the bench already
// runs (calling-score v1 in production, v2 pushed) and, under one paced load
// at rate, promotes v2 and v1 in turn in windows between steady gaps, and
// compares the latencies inside the windows with the rest.
func (b *bench) hotSwap(body []byte, rate float64) (swapResult, error) {
	cp, err := b.controlPlane("swap-control-plane")
	if err != nil {
		return swapResult{}, err
	}
	second := fmt.Sprintf("%s/swap-v2.onnx", b.dir)
	if err := writeMLP(second, 7, false); err != nil {
		return swapResult{}, err
	}
	if err := b.push(cp, "calling-score", b.o.model, true); err != nil {
		return swapResult{}, err
	}
	if err := b.push(cp, "calling-score", second, false); err != nil {
		return swapResult{}, err
	}
	if err := b.promote(cp, "calling-score", 1); err != nil {
		return swapResult{}, err
	}
	// Two unrelated versions swapped back and forth score the same traffic
	// differently, and the monitor would roll the newer back on prediction
	// drift: it does not act here (the rollback run measures it).
	if err := b.call(cp, http.MethodPut, "/api/v1/models/calling-score/policy", map[string]any{"failure_limit": 1 << 30}); err != nil {
		return swapResult{}, err
	}
	// The feedback join is bounded; keep it small enough that the warm-up fills
	// it, so the memory comparison sees the swaps and not the join filling up.
	sc, err := b.scorer(cp, "swap-scorer", "--feedback-capacity", "10000")
	if err != nil {
		return swapResult{}, err
	}
	defer b.stopAll()
	if err := waitServed("calling-score", 1, 10*time.Second, sc); err != nil {
		return swapResult{}, err
	}
	url := sc.url + "/v1/score"
	body = append(bytesTrimmedClone(body), `,"budget_ms":`+swapBudget+`}`...)
	res := swapResult{swaps: b.o.swaps}
	ctx := context.Background()
	promote := func(v int) error {
		if err := b.promote(cp, "calling-score", v); err != nil {
			return err
		}
		return waitServed("calling-score", v, 10*time.Second, sc)
	}
	// Warm up before the memory baseline: connections, caches, the feedback
	// join, and one swap to each version, so that one-time costs (ONNX
	// Runtime's first session on the loader thread, its allocator arenas) are
	// not counted as what the swaps leave behind.
	warm, stopWarm := context.WithCancel(ctx)
	warmDone := make(chan error, 1)
	go func() {
		_, err := load(warm, loadSpec{URL: url, Body: body, Rate: rate, Conns: pacedConns(rate), Duration: time.Minute})
		warmDone <- err
	}()
	for _, v := range []int{2, 1} {
		if err := promote(v); err != nil {
			stopWarm()
			<-warmDone
			return res, err
		}
		time.Sleep(time.Second)
	}
	stopWarm()
	if err := <-warmDone; err != nil {
		return res, err
	}
	res.rssBefore, res.threadsBefore = settledRSS(sc)

	// One load run throughout, alternating a steady gap with a short window of
	// swapsPerWindow promotions, so that steady and swapping latencies come from
	// the same run; requests are told apart by when they were sent. Windows and
	// gaps are short and many, so that a stall of the machine (a VM's stolen
	// time can hold everything for tens of milliseconds) falls on both kinds
	// alike; each gap lasts as long as the window before it.
	steadyGap := swapsPerWindow * b.o.swapEvery
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	type outcome struct {
		res loadResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := load(loadCtx, loadSpec{URL: url, Body: body, Rate: rate, Conns: pacedConns(rate), Duration: 10 * time.Minute})
		done <- outcome{r, err}
	}()
	fail := func(err error) (swapResult, error) {
		stopLoad()
		<-done
		return res, err
	}
	var windows, gaps [][2]int64
	pause := func() {
		from := time.Now().UnixNano()
		time.Sleep(steadyGap)
		gaps = append(gaps, [2]int64{from, time.Now().UnixNano()})
	}
	endWindow := func() {
		w := &windows[len(windows)-1]
		w[1] = time.Now().UnixNano()
		steadyGap = time.Duration(w[1] - w[0])
	}
	start := time.Now()
	var next time.Time
	for i := 0; i < b.o.swaps; i++ {
		if i%swapsPerWindow == 0 {
			if i > 0 {
				endWindow()
			}
			pause()
			windows = append(windows, [2]int64{time.Now().UnixNano(), 0})
			next = time.Now()
		}
		time.Sleep(time.Until(next))
		next = next.Add(b.o.swapEvery)
		if err := promote(2 - i%2); err != nil { // 2, 1, 2, 1, …
			return fail(fmt.Errorf("hot swap %d: %w", i, err))
		}
		if (i+1)%10 == 0 {
			r, _ := sc.rss()
			res.rssTrend = append(res.rssTrend, r)
		}
	}
	if len(windows) > 0 {
		endWindow()
	}
	pause()
	res.took = time.Since(start)
	stopLoad()
	out := <-done
	if out.err != nil {
		return res, out.err
	}
	all := out.res
	during, steady := all.split(windows)
	res.duringP99, res.steadyP99 = during.quantile(.99), steady.quantile(.99)
	res.duringRequests, res.steadyRequests = during.Requests, steady.Requests
	over := func(spans [][2]int64) (n int) {
		for _, span := range spans {
			if in := all.within(span); in.Requests > 0 && in.quantile(.99) > res.steadyP99*3/2 {
				n++
			}
		}
		return n
	}
	res.windowsOver, res.gapsOver, res.windows, res.gaps = over(windows), over(gaps), len(windows), len(gaps)
	res.failed, res.fallbacks, res.reasons, res.firstError = all.Failed, all.Fallbacks, all.FallbackReasons, all.FirstError
	res.rssAfter, res.threadsAfter = settledRSS(sc)
	return res, nil
}

// rollbackRun promotes a version that answers NaN to two scorer nodes under
// load, with the default policy and 1 s reports, and times how long until both
// serve the previous version again.
func (b *bench) rollbackRun(body []byte) (time.Duration, error) {
	cp, err := b.controlPlane("rollback-control-plane")
	if err != nil {
		return 0, err
	}
	defer b.stopAll()
	bad := fmt.Sprintf("%s/nan.onnx", b.dir)
	if err := writeMLP(bad, 3, true); err != nil {
		return 0, err
	}
	if err := b.push(cp, "calling-score", b.o.model, true); err != nil {
		return 0, err
	}
	if err := b.push(cp, "calling-score", bad, false); err != nil {
		return 0, err
	}
	if err := b.promote(cp, "calling-score", 1); err != nil {
		return 0, err
	}
	var scorers []*proc
	for i := 0; i < 2; i++ {
		sc, err := b.scorer(cp, fmt.Sprint("rollback-scorer-", i))
		if err != nil {
			return 0, err
		}
		scorers = append(scorers, sc)
	}
	if err := waitServed("calling-score", 1, 30*time.Second, scorers...); err != nil {
		return 0, err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for _, sc := range scorers {
		go load(ctx, loadSpec{URL: sc.url + "/v1/score", Body: body, Rate: 300, Conns: pacedConns(300), Duration: time.Minute})
	}
	time.Sleep(3 * time.Second)
	start := time.Now()
	if err := b.promote(cp, "calling-score", 2); err != nil {
		return 0, err
	}
	if err := waitServed("calling-score", 2, 30*time.Second, scorers...); err != nil {
		return 0, fmt.Errorf("rollback run: %w", err)
	}
	if err := waitServed("calling-score", 1, 30*time.Second, scorers...); err != nil {
		return 0, fmt.Errorf("rollback run: %w", err)
	}
	return time.Since(start), nil
}
