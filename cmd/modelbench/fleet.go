package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/monitor/report"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// The fleet run simulates N scorer nodes against one control plane (a real
// `modelctl serve` child): each node has a scorer token of its own, holds a
// watch stream on the model and reports every second with a report of the
// size a real node sends (one model, one window, the card's 39 features
// binned). It measures the control plane's CPU per report and in all, its
// resident memory, and how long a promotion takes to reach every watcher.

// nodesPerSourceAddr bounds the simulated nodes on one loopback source
// address: each holds two connections (its watch stream and its reports),
// and the control plane admits 4096 per address (--max-conns-per-addr).
const nodesPerSourceAddr = 1000

// fleetResult is one fleet run's figures.
type fleetResult struct {
	nodes          int
	reportBytes    int
	window         time.Duration
	reports        int
	reportFailures int
	cpu            cost
	simCPU         time.Duration // the simulator's own CPU over the window
	rssMB          float64
	threads        int
	promotions     int
	latencies      []time.Duration // one per (promotion, watcher) that heard it
	missed         int             // (promotion, watcher) pairs that had not heard it 2 s on
	sources        int
	load           string
}

// cardBins is how many reference bins each feature of a card has, in the
// card's feature order.
func cardBins(path string) ([]int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c struct {
		Features  []string `json:"features"`
		Reference struct {
			Features map[string]struct {
				Proportions []float64 `json:"proportions"`
			} `json:"features"`
		} `json:"reference"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	bins := make([]int, len(c.Features))
	for i, f := range c.Features {
		bins[i] = len(c.Reference.Features[f].Proportions)
	}
	return bins, nil
}

// fleetReport is a report of the size a scorer node sends for one model
// whose card's reference has features binned as bins say.
func fleetReport(node string, bins []int, rng *rand.Rand) []byte {
	w := report.Window{Version: 1, Arm: "production", Requests: 400 + rng.Int64N(200), Rows: 400 + rng.Int64N(200),
		Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins),
		RefPrediction: make([]int64, 10), Features: make([][]int64, len(bins))}
	for i := range w.Latency {
		w.Latency[i] = rng.Int64N(100)
	}
	for i := range w.Prediction {
		w.Prediction[i] = rng.Int64N(50)
	}
	for i := range w.RefPrediction {
		w.RefPrediction[i] = rng.Int64N(50)
	}
	for i := range w.Features {
		w.Features[i] = make([]int64, bins[i])
		for j := range w.Features[i] {
			w.Features[i][j] = rng.Int64N(60)
		}
	}
	rep := report.Report{Node: node, Address: "http://" + node + ":8081", Ready: true, Time: time.Now().UTC(), Interval: 1,
		Models: []report.ModelReport{{Model: "calling-score", Windows: []report.Window{w},
			Served: []report.Served{{Arm: "production", Version: 1, Digest: strings.Repeat("ab", 32)}}}}}
	b, _ := json.Marshal(rep)
	return b
}

// sourceTransport dials from a loopback source address of its own.
func sourceTransport(src string) *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConns: 0, MaxIdleConnsPerHost: 4 * nodesPerSourceAddr,
		IdleConnTimeout: time.Minute, DisableCompression: true}
}

// raiseFileLimit raises the soft limit on open files to the hard one: the
// bench holds two connections per node, and its children inherit the limit.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	l.Cur = l.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

// fleetSizes parses -fleet: node counts, comma-separated.
func fleetSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 20000 {
			return nil, fmt.Errorf("-fleet %q: want node counts from 1 to 20000, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// runFleet runs the fleet simulation for each size and prints a table.
func runFleet(o options, sizes []int) error {
	limit := raiseFileLimit()
	for _, n := range sizes {
		if need := uint64(2*n + 256); limit < need {
			return fmt.Errorf("-fleet %d needs about %d open files; the limit is %d (ulimit -n)", n, need, limit)
		}
	}
	dir, err := mkBenchDir()
	if err != nil {
		return err
	}
	if os.Getenv("MODELBENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	b := &bench{o: o, dir: dir}
	defer b.stopAll()
	if err := b.newToken(); err != nil {
		return err
	}
	fmt.Printf("modelbench -fleet: %d CPUs (%s) shared by the control plane and the simulated nodes; open files limit %d\n\n", runtimeCPUs(), cpuName(), limit)
	var results []fleetResult
	for _, n := range sizes {
		r, err := b.fleet(n, o.fleetWindow, o.fleetPromotions)
		if err != nil {
			return fmt.Errorf("fleet of %d: %w", n, err)
		}
		results = append(results, r)
		b.stopAll()
	}
	printFleet(results)
	return nil
}

func (b *bench) fleet(n int, window time.Duration, promotions int) (fleetResult, error) {
	res := fleetResult{nodes: n, window: window, load: loadAverage()}
	name := fmt.Sprintf("control-plane-fleet-%d", n)
	cp, err := b.controlPlane(name, "--max-nodes", strconv.Itoa(max(n, monitor.DefaultMaxNodes))) // every simulated node followed
	if err != nil {
		return res, err
	}
	// v1 is the shipped model with its card (whose reference bins the
	// reports fill); v2 another network, promoted back and forth with it.
	if err := b.push(cp, "calling-score", b.o.model, true); err != nil {
		return res, err
	}
	v2 := filepath.Join(b.dir, fmt.Sprintf("fleet-%d-v2.onnx", n))
	if err := writeMLP(v2, 12, false); err != nil {
		return res, err
	}
	if err := b.push(cp, "calling-score", v2, false); err != nil {
		return res, err
	}
	if err := b.promote(cp, "calling-score", 1); err != nil {
		return res, err
	}
	bins, err := cardBins(filepath.Join(filepath.Dir(b.o.model), "card.json"))
	if err != nil {
		return res, err
	}
	admin := client.New(cp.url)
	admin.Token = b.token
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A scorer token per node, bound to its node.
	tokens := make([]string, n)
	var next atomic.Int64
	var tokErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				t, err := admin.CreateTokenFor(ctx, wire.TokenBody{Name: fmt.Sprintf("fleet-%d", i), Role: registry.RoleScorer, Node: fmt.Sprintf("fleet-node-%d", i)})
				if err != nil {
					tokErr.Store(err)
					return
				}
				tokens[i] = t.Secret
			}
		}()
	}
	wg.Wait()
	if err, _ := tokErr.Load().(error); err != nil {
		return res, fmt.Errorf("creating scorer tokens: %w", err)
	}
	dep, err := admin.Deployment(ctx, "calling-score")
	if err != nil {
		return res, err
	}

	res.sources = (n + nodesPerSourceAddr - 1) / nodesPerSourceAddr
	transports := make([]*http.Transport, res.sources)
	for i := range transports {
		transports[i] = sourceTransport(fmt.Sprintf("127.0.0.%d", 2+i))
		defer transports[i].CloseIdleConnections()
	}
	var (
		watching  atomic.Int64
		reports   atomic.Int64
		failures  atomic.Int64
		mu        sync.Mutex
		heard     = map[uint64][]time.Time{} // revision → when each watcher heard it
		reportLen atomic.Int64
		measuring atomic.Bool
	)
	for i := 0; i < n; i++ {
		hc := &http.Client{Transport: transports[i/nodesPerSourceAddr]}
		node, token := fmt.Sprintf("fleet-node-%d", i), tokens[i]
		wg.Add(2)
		go func() { // the watch stream
			defer wg.Done()
			since := dep.Revision
			for ctx.Err() == nil {
				since = fleetWatch(ctx, hc, cp.url, token, since, &watching, func(rev uint64, at time.Time) {
					mu.Lock()
					heard[rev] = append(heard[rev], at)
					mu.Unlock()
				})
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
		go func() { // a report every second, from a random moment on
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(rng.Int64N(int64(time.Second)))):
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				body := fleetReport(node, bins, rng)
				reportLen.Store(int64(len(body)))
				err := fleetPost(ctx, hc, cp.url+"/api/v1/reports", token, body)
				if measuring.Load() {
					if err == nil {
						reports.Add(1)
					} else if ctx.Err() == nil {
						if failures.Add(1) == 1 {
							fmt.Fprintln(os.Stderr, "modelbench: a report failed (more may):", err)
						}
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	for deadline := time.Now().Add(2 * time.Minute); watching.Load() < int64(n); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("only %d of %d watch streams open after 2 minutes; the control plane's log:\n%s", watching.Load(), n, cp.logTail())
		}
	}
	time.Sleep(3 * time.Second) // every node has reported a few times

	// The steady state: every node watching and reporting each second.
	res.load = loadAverage()
	m, err := startMeter(cp.pid())
	if err != nil {
		return res, err
	}
	self, err := startMeter(os.Getpid())
	if err != nil {
		return res, err
	}
	measuring.Store(true)
	time.Sleep(window)
	measuring.Store(false)
	if sc, err := self.stop(0, 0); err == nil {
		res.simCPU = sc.cpu
	}
	res.reports, res.reportFailures = int(reports.Load()), int(failures.Load())
	if res.cpu, err = m.stop(res.reports, res.reports); err != nil {
		return res, err
	}
	res.reportBytes = int(reportLen.Load())
	res.rssMB, res.threads = cp.rss()
	res.rssMB /= 1 << 20

	// Promotions, one every 2 s, alternating v2 and v1, timed from the
	// request to each watcher hearing its event.
	for k := 0; k < promotions; k++ {
		start := time.Now()
		ev, err := admin.Promote(ctx, "calling-score", wire.AliasBody{Version: 2 - k%2, Reason: "modelbench -fleet"})
		if err != nil {
			return res, err
		}
		time.Sleep(2 * time.Second)
		mu.Lock()
		got := heard[ev.Revision]
		mu.Unlock()
		for _, at := range got {
			res.latencies = append(res.latencies, at.Sub(start))
		}
		res.missed += n - len(got)
		res.promotions++
	}
	slices.Sort(res.latencies)
	return res, nil
}

// fleetWatch holds one watch stream until it breaks, calling heard with each
// event's revision and arrival; it returns the last revision heard.
func fleetWatch(ctx context.Context, hc *http.Client, base, token string, since uint64, watching *atomic.Int64, heard func(uint64, time.Time)) uint64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/watch?model=calling-score&since="+strconv.FormatUint(since, 10), nil)
	if err != nil {
		return since
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return since
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return since
	}
	watching.Add(1)
	defer watching.Add(-1)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		at := time.Now()
		var e struct {
			Revision uint64 `json:"revision"`
		}
		if json.Unmarshal(line, &e) == nil && e.Revision > since {
			since = e.Revision
			heard(e.Revision, at)
		}
	}
	return since
}

// fleetPost posts a report with a node's token.
func fleetPost(ctx context.Context, hc *http.Client, url, token string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("report: %s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	return nil
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func printFleet(rs []fleetResult) {
	fmt.Println("Fleet: N simulated scorer nodes, each with a token of its own, a watch stream and a report a second, against one control plane (modelctl serve, bbolt)")
	fmt.Println()
	fmt.Println("| nodes | source addrs | report | reports/s | CP CPU per report | CP CPU (cores) | CP RSS | CP threads | simulator CPU (cores) | promotion → all watchers p50 | p99 | max | not heard within 2 s | load average before |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		secs := r.window.Seconds()
		per := time.Duration(0)
		if r.reports > 0 {
			per = r.cpu.cpu / time.Duration(r.reports)
		}
		mx := time.Duration(0)
		if len(r.latencies) > 0 {
			mx = r.latencies[len(r.latencies)-1]
		}
		fmt.Printf("| %d | %d | %.1f KB | %.0f (%d failed) | %s | %.2f | %.0f MB | %d | %.2f | %s | %s | %s | %d of %d | %s |\n",
			r.nodes, r.sources, float64(r.reportBytes)/1024, float64(r.reports)/secs, r.reportFailures, us(per), r.cpu.cpu.Seconds()/secs,
			r.rssMB, r.threads, r.simCPU.Seconds()/secs, ms(quantile(r.latencies, 0.5)), ms(quantile(r.latencies, 0.99)), ms(mx), r.missed, r.nodes*r.promotions,
			strings.TrimPrefix(r.load, "load average before "))
	}
	fmt.Println()
	for _, r := range rs {
		if r.nodes == 1000 {
			secs := r.window.Seconds()
			fmt.Printf("Goals at 1,000 nodes: promotion to all watchers p99 %s (goal < 1 s: %s); CPU %.2f cores for 1,000 reports/s (goal < 1: %s)\n",
				ms(quantile(r.latencies, 0.99)), yes(quantile(r.latencies, 0.99) < time.Second && r.missed == 0),
				r.cpu.cpu.Seconds()/secs, yes(r.cpu.cpu.Seconds()/secs < 1))
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

// mkBenchDir makes the directory of the run's logs and data (kept when
// MODELBENCH_KEEP is set: the caller removes it otherwise).
func mkBenchDir() (string, error) {
	dir, err := os.MkdirTemp("", "modelbench-*")
	if err == nil && os.Getenv("MODELBENCH_KEEP") != "" {
		fmt.Fprintln(os.Stderr, "modelbench: keeping the logs in", dir)
	}
	return dir, err
}

// newToken makes the admin token the bench's control planes start with.
func (b *bench) newToken() error {
	tok, err := exec.Command(b.o.modelctl, "token", "new").Output()
	if err != nil {
		return fmt.Errorf("modelctl token new: %w", err)
	}
	b.token = strings.TrimSpace(string(tok))
	return nil
}

func runtimeCPUs() int { return runtime.NumCPU() }
