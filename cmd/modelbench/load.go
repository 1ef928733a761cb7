package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/api"
)

// loadResult is what one load run saw.
type loadResult struct {
	requests  int
	failed    int // transport errors and non-2xx
	fallbacks int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		},
	}
}

// fire sends one request and reports its latency, success and source.
func fire(hc *http.Client, url string, body []byte) (time.Duration, bool, bool) {
	return fireWith(hc, url, body, nil)
}

// fireWith is fire with extra headers (nil: a JSON body).
func fireWith(hc *http.Client, url string, body []byte, headers map[string]string) (time.Duration, bool, bool) {
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, false, false
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return time.Since(start), false, false
	}
	var r api.ScoreResponse
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if resp.StatusCode/100 != 2 {
		return lat, false, false
	}
	json.Unmarshal(b, &r)
	return lat, true, r.Source == api.SourceFallback
}

// merge adds up runs of the same kind (interleaved rounds).
func merge(rs ...loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.requests += r.requests
		m.failed += r.failed
		m.fallbacks += r.fallbacks
		m.elapsed += r.elapsed
		m.latencies = append(m.latencies, r.latencies...)
	}
	return m
}

// closedLoop runs conns workers back to back for d: the maximum load.
func closedLoop(url string, body []byte, conns int, d time.Duration) loadResult {
	return closedLoopWith(url, body, nil, conns, d)
}

// closedLoopWith is closedLoop with extra request headers.
func closedLoopWith(url string, body []byte, headers map[string]string, conns int, d time.Duration) loadResult {
	hc := newClient(conns)
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	res := loadResult{}
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lats []time.Duration
			var failed, fb int
			for time.Now().Before(deadline) {
				lat, ok, isFB := fireWith(hc, url, body, headers)
				lats = append(lats, lat)
				if !ok {
					failed++
				}
				if isFB {
					fb++
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lats...)
			res.failed += failed
			res.fallbacks += fb
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.latencies)
	return res
}

// paced sends requests at rate per second, open loop, for d (or until ctx ends),
// so latency is measured at a chosen load rather than at saturation.
func paced(ctx context.Context, url string, body []byte, rate float64, d time.Duration) loadResult {
	const conns = 64
	hc := newClient(conns)
	defer hc.CloseIdleConnections()
	jobs := make(chan time.Time, 4096)
	var mu sync.Mutex
	res := loadResult{}
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range jobs {
				_, ok, isFB := fire(hc, url, body)
				// Count from when the request was due, so queueing in the
				// generator is not hidden (no coordinated omission).
				lat := time.Since(due)
				mu.Lock()
				res.latencies = append(res.latencies, lat)
				if !ok {
					res.failed++
				}
				if isFB {
					res.fallbacks++
				}
				mu.Unlock()
			}
		}()
	}
	// Release requests in 1 ms ticks (as many as are due), which costs the
	// generator far less than a timer per request.
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	released := 0
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		due := int(rate * now.Sub(start).Seconds())
		for ; released < due; released++ {
			at := start.Add(time.Duration(float64(released) / rate * float64(time.Second)))
			select {
			case jobs <- at:
			default: // generator saturated: count as failed rather than block
				mu.Lock()
				res.failed++
				mu.Unlock()
			}
		}
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.latencies)
	return res
}
