// Command modelbench is `make bench`: in one run on this machine it measures a raw
// onnxruntime_go loop on the shipped model, a null-model HTTP handler that decodes
// the same JSON, and the real scorer, side by side over loopback, then promotes
// 100 times under load. It prints one table with the ratios and whether each
// target is met. All traffic goes to 127.0.0.1, bounded in time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/valyala/fasthttp"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/trainer"
)

type options struct {
	pin       bool
	model     string
	duration  time.Duration
	conns     int
	quick     bool
	quick256  bool
	swaps     int
	swapEvery time.Duration
}

func main() {
	o := options{}
	flag.BoolVar(&o.pin, "pin", false, "run the servers on the first half of the CPUs and the load generator on the other half")
	flag.StringVar(&o.model, "model", "models/calling_score/model.onnx", "ONNX model to measure")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "length of each load run")
	flag.IntVar(&o.conns, "conns", 0, "concurrent connections for maximum-load runs (0: 64 a CPU, enough to keep the CPUs busy)")
	flag.BoolVar(&o.quick, "quick", false, "measure only the single-row contenders, print one line and stop")
	flag.BoolVar(&o.quick256, "quick256", false, "measure only the 256-row binary contenders and the raw loop, print one line and stop")
	flag.IntVar(&o.swaps, "swaps", 100, "promotions in the hot-swap run")
	flag.DurationVar(&o.swapEvery, "swap-every", 150*time.Millisecond, "time between promotions in the hot-swap run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	child := flag.Bool("load-child", false, "run as the load generator child (internal)")
	flag.Parse()
	if *child {
		if err := loadChild(); err != nil {
			fmt.Fprintln(os.Stderr, "modelbench load generator:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(o); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
}

// benchToken is the admin token of the control planes the bench starts.
var benchToken = registry.NewTokenSecret()

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func row(v float32) []float32 {
	r := make([]float32, 39)
	for i := range r {
		r[i] = v + float32(i)/100
	}
	return r
}

// binaryBody is a 256-row OIP v2 request with the binary tensor extension: the
// JSON header's length and the whole body.
func binaryBody() (int, []byte) {
	data := make([]byte, 0, 256*39*4)
	for i := 0; i < 256; i++ {
		for _, v := range row(float32(i) / 512) {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
	}
	header := []byte(fmt.Sprintf(`{"inputs":[{"name":"input","shape":[256,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(data)))
	return len(header), append(header, data...)
}

func bodies() (single, multi []byte) {
	single, _ = json.Marshal(map[string]any{"features": row(0.3)})
	rows := make([][]float32, 256)
	for i := range rows {
		rows[i] = row(float32(i) / 512)
	}
	multi, _ = json.Marshal(map[string]any{"rows": rows})
	return single, multi
}

func run(o options) error {
	if _, err := loader.Init(""); err != nil {
		return err
	}
	placement := "servers and load generator share every CPU"
	if n := runtime.NumCPU(); o.pin && n >= 2 {
		serverCPUs, generatorCPUs = cpuRange(0, n/2), cpuRange(n/2, n)
		if err := pinTo(serverCPUs); err != nil {
			return fmt.Errorf("pinning to CPUs %v: %w (run with -pin=false)", serverCPUs, err)
		}
		placement = fmt.Sprintf("servers and raw loop on CPUs %v, load generator on CPUs %v", serverCPUs, generatorCPUs)
	}
	if o.conns <= 0 {
		o.conns = 64 * runtime.NumCPU()
	}
	fmt.Printf("modelbench: %s, %d CPUs (%s), %s, ONNX Runtime %s, %s per run, %d connections\n\n",
		runtime.Version(), runtime.NumCPU(), placement, cpuName(), loader.Version(), o.duration, o.conns)
	single, multi := bodies()
	if o.quick256 {
		return quick256(o)
	}

	raw1, err := rawLoop(o.model, 1, o.duration)
	if err != nil {
		return err
	}
	raw256, err := rawLoop(o.model, 256, o.duration)
	if err != nil {
		return err
	}

	nullURL, stopNull := serveFast(nullHandler())
	defer stopNull()
	echoNullURL, stopEchoNull := serve(echoNullHandler())
	defer stopEchoNull()
	batchURL, stopBatch, batcher, err := scorer(o.model, true)
	if err != nil {
		return err
	}
	defer stopBatch()
	scorerURL, stopScorer, _, err := scorer(o.model, false)
	if err != nil {
		return err
	}
	defer stopScorer()
	// One closed loop takes the three in turns of 200 ms, so that whatever the
	// machine does meanwhile (stolen time on a VM, a collection) falls on all
	// three alike.
	statBefore := procStat()
	single4 := turns([]string{nullURL + "/v1/score", scorerURL + "/v1/score", batchURL + "/v1/score", echoNullURL + "/v1/score"}, single, nil, o.conns, 4*o.duration, 200*time.Millisecond)
	null, one, oneBatched, echoNull := single4[0], single4[1], single4[2], single4[3]
	busy := machineShares(statBefore, procStat())
	batchRuns, batchRows := batcher.Stats()
	if o.quick {
		fmt.Printf("null-model handler %.0f requests/s (%.0f on echo and net/http), scorer %.0f (micro-batching off), %.0f (on, %.2f rows per session run): %s of the null handler; %s\n",
			null.rps(), echoNull.rps(), one.rps(), oneBatched.rps(), float64(batchRows)/float64(max(1, batchRuns)), pct(max(one.rps(), oneBatched.rps())/null.rps()), busy)
		return nil
	}
	best, bestURL, bestName := one, scorerURL, "off"
	otherURL, otherName := batchURL, "on"
	if oneBatched.rps() > one.rps() {
		best, bestURL, bestName = oneBatched, batchURL, "on"
		otherURL, otherName = scorerURL, "off"
	}
	rate := 0.7 * best.rps()
	// The same rate on the null handler, in turns with the scorer so that the
	// machine's stalls fall on both: what loopback, HTTP and this machine's
	// scheduling give before any scoring.
	paced70 := pacedTurns([]string{bestURL + "/v1/score", nullURL + "/v1/score"}, single, rate, 2*o.duration, 200*time.Millisecond)
	at70, null70 := paced70[0], paced70[1]
	// And the other batching setting (alone: at this rate it may fall behind, and
	// its backlog would spill into the others' turns): what the default costs or
	// saves in latency.
	other70 := paced(context.Background(), otherURL+"/v1/score", single, rate, o.duration)
	many := closedLoop(bestURL+"/v1/score", multi, nil, o.conns/2, o.duration)
	bins, err := binaryRuns(o, bestURL, true)
	if err != nil {
		return err
	}
	manyBin, manyBinModelless, manyBinBare, manyBinFast, manyBinNetHTTP := bins[0], bins[1], bins[2], bins[3], bins[4]
	// The raw loop again, right after: this VM's speed drifts within a minute,
	// and the 256-row ratios compare with the mean of the two.
	raw256after, err := rawLoop(o.model, 256, o.duration)
	if err != nil {
		return err
	}
	raw256 = rawResult{runs: (raw256.runs + raw256after.runs) / 2, perRun: (raw256.perRun + raw256after.perRun) / 2}
	ceiling256 := 1 / (1 + raw256.runs/manyBinModelless.rps())
	floor256 := 1 / (1 + raw256.runs/manyBinBare.rps())

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\trequests/s\trows/s\tp50\tp99\tfailed\t")
	line := func(name string, r loadResult, rows int) {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%d\t\n", name, r.rps(), r.rps()*float64(rows), r.quantile(.5).Round(time.Microsecond), r.quantile(.99).Round(time.Microsecond), r.Failed)
	}
	fmt.Fprintf(tw, "raw onnxruntime_go loop, batch 1\t%.0f\t%.0f\t%s\t\t\t\n", raw1.runs, raw1.runs, raw1.perRun.Round(time.Microsecond))
	fmt.Fprintf(tw, "raw onnxruntime_go loop, batch 256 (mean of 2 runs)\t%.0f\t%.0f\t%s\t\t\t\n", raw256.runs, raw256.runs*256, raw256.perRun.Round(time.Microsecond))
	line("null-model handler, 1 row", null, 1)
	line("null-model handler on echo and net/http, 1 row", echoNull, 1)
	line("scorer, 1 row, max load", one, 1)
	line("scorer, micro-batching on, 1 row, max load", oneBatched, 1)
	line(fmt.Sprintf("null-model handler, 1 row, same rate (%.0f/s)", rate), null70, 1)
	line(fmt.Sprintf("scorer (batching %s), 1 row, 70%% load (%.0f/s)", bestName, rate), at70, 1)
	line(fmt.Sprintf("scorer (batching %s), 1 row, same rate", otherName), other70, 1)
	line("scorer, 256 rows, JSON, max load", many, 256)
	line("scorer, 256 rows, OIP v2 binary FP32, max load", manyBin, 256)
	line("the same with no model (constant rules answer)", manyBinModelless, 256)
	line("the same from a server that only reads and answers", manyBinBare, 256)
	line("the same from fasthttp that only reads and answers", manyBinFast, 256)
	line("the same from net/http that only reads and answers", manyBinNetHTTP, 256)
	fmt.Fprintf(tw, "micro-batching on vs off, 1 row (%.2f rows per session run)\t%.2f×\t\t\t\t\t\n", float64(batchRows)/float64(max(1, batchRuns)), oneBatched.rps()/one.rps())
	tw.Flush()
	fmt.Printf("during the single-row max-load runs: %s\n", busy)

	swap, err := hotSwap(o, single, rate)
	if err != nil {
		return err
	}

	rb, err := rollbackRun(o, single)
	if err != nil {
		return err
	}

	fmt.Println()
	targets := []struct {
		name string
		got  string
		ok   bool
	}{
		{"single-row ≥ 85% of the null-model handler's requests/s (batching " + bestName + ")", pct(best.rps() / null.rps()), best.rps() >= 0.85*null.rps()},
		{"single-row, against the null-model handler on echo and net/http (for reference)", pct(best.rps() / echoNull.rps()), best.rps() >= 0.85*echoNull.rps()},
		{"p99 under 2 ms at 70% load", fmt.Sprintf("%s (null handler at that rate: %s)", at70.quantile(.99).Round(time.Microsecond), null70.quantile(.99).Round(time.Microsecond)), at70.quantile(.99) < 2*time.Millisecond},
		{"256-row requests ≥ 70% of the raw loop's rows/s at batch 256 (OIP v2 binary)", fmt.Sprintf("%s (the most this machine allows: %s with the scorer's own work, %s with none on its HTTP server, %s with none at all, %s on net/http)", pct(manyBin.rps()*256/(raw256.runs*256)), pct(ceiling256), pct(1/(1+raw256.runs/manyBinFast.rps())), pct(floor256), pct(1/(1+raw256.runs/manyBinNetHTTP.rps()))), manyBin.rps()*256 >= 0.7*raw256.runs*256},
		{"256-row requests, JSON /v1/score (for reference)", pct(many.rps() * 256 / (raw256.runs * 256)), many.rps()*256 >= 0.7*raw256.runs*256},
		{fmt.Sprintf("%d swaps: 0 failed requests", swap.swaps), fmt.Sprint(swap.failed), swap.failed == 0},
		{fmt.Sprintf("%d swaps: 0 swap-caused fallbacks", swap.swaps), fmt.Sprint(swap.fallbacks), swap.fallbacks == 0},
		{"p99 during swaps ≤ 1.5× steady p99", fmt.Sprintf("%s vs %s (%.2f×)", swap.duringP99.Round(time.Microsecond), swap.steadyP99.Round(time.Microsecond), float64(swap.duringP99)/float64(swap.steadyP99)), swap.duringP99 <= swap.steadyP99*3/2},
		{"bad promotion rolled back on every scorer within 5 s (1 s reports)", rb.Round(time.Millisecond).String(), rb < 5*time.Second},
		{"memory after the swaps within 10 MB of before", fmt.Sprintf("%+.1f MB (RSS %.1f → %.1f MB)", (swap.rssAfter-swap.rssBefore)/1e6, swap.rssBefore/1e6, swap.rssAfter/1e6), swap.rssAfter-swap.rssBefore <= 10e6},
	}
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tmet")
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.name, t.got, yes(t.ok))
	}
	tw.Flush()
	fmt.Printf("\nhot swap: %d promotions, one every %s in windows of %d, each followed by a steady gap as long, %s in all at %.0f requests/s: %d requests inside the windows, %d outside, %d sessions destroyed; p99 over 1.5× the steady p99 in %d of %d windows and %d of %d gaps\n",
		swap.swaps, o.swapEvery, swapsPerWindow, swap.took.Round(time.Millisecond), rate, swap.duringRequests, swap.steadyRequests, swap.destroyed, swap.windowsOver, swap.windows, swap.gapsOver, swap.gaps)
	trend := make([]string, len(swap.rssTrend))
	for i, r := range swap.rssTrend {
		trend[i] = fmt.Sprintf("%.1f", r/1e6)
	}
	fmt.Printf("RSS (MB) after every 10 swaps, no collection first: %s; Go heap in use %.1f → %.1f MB; OS threads %d → %d\n", strings.Join(trend, " "), swap.heapBefore/1e6, swap.heapAfter/1e6, swap.threadsBefore, swap.threadsAfter)
	return nil
}

// machineShares describes how the whole machine spent the time between two
// readings of /proc/stat: a maximum-load run should leave little idle.
func machineShares(before, after [8]int64) string {
	var total int64
	for i := range after {
		after[i] -= before[i]
		total += after[i]
	}
	if total == 0 {
		return "machine CPU shares unknown (no /proc/stat)"
	}
	share := func(v int64) string { return pct(float64(v) / float64(total)) }
	return fmt.Sprintf("machine CPU %s idle, %s stolen by the hypervisor", share(after[3]), share(after[7]))
}

// serverCPUs and generatorCPUs are where the servers and the load generator run
// (nil: anywhere).
var serverCPUs, generatorCPUs []int

func cpuRange(from, to int) []int {
	var cpus []int
	for c := from; c < to; c++ {
		cpus = append(cpus, c)
	}
	return cpus
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func cpuName() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.Index(l, ":"); i >= 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return "unknown CPU"
}

type rawResult struct {
	runs   float64 // runs per second over all workers
	perRun time.Duration
}

// rawLoop runs the model with onnxruntime_go directly, one session with
// preallocated tensors per CPU the servers have, as fast as it goes: the ceiling
// for the scorer.
func rawLoop(path string, batch int, d time.Duration) (rawResult, error) {
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	counts := make([]int, workers)
	errs := make([]error, workers)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			in := make([]float32, batch*39)
			for i := range in {
				in[i] = float32(i%97) / 97
			}
			it, err := ort.NewTensor(ort.NewShape(int64(batch), 39), in)
			if err != nil {
				errs[w] = err
				return
			}
			defer it.Destroy()
			ot, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(batch), 1))
			if err != nil {
				errs[w] = err
				return
			}
			defer ot.Destroy()
			so, _ := ort.NewSessionOptions()
			so.SetIntraOpNumThreads(1)
			so.SetInterOpNumThreads(1)
			s, err := ort.NewAdvancedSession(path, []string{"input"}, []string{"output"}, []ort.Value{it}, []ort.Value{ot}, so)
			so.Destroy()
			if err != nil {
				errs[w] = err
				return
			}
			defer s.Destroy()
			for time.Now().Before(deadline) {
				if err := s.Run(); err != nil {
					errs[w] = err
					return
				}
				counts[w]++
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	total := 0
	for w := range counts {
		if errs[w] != nil {
			return rawResult{}, errs[w]
		}
		total += counts[w]
	}
	rps := float64(total) / el.Seconds()
	return rawResult{runs: rps, perRun: time.Duration(float64(el) * float64(workers) / float64(total))}, nil
}

func serve(h http.Handler) (string, func()) { return open(api.NewServer("127.0.0.1:0", h, quiet)) }

// serveFast serves h on fasthttp, as scorer nodes do.
func serveFast(h *api.FastHandler) (string, func()) {
	return open(api.NewFastServer("127.0.0.1:0", h, quiet))
}

func open(s *api.Server) (string, func()) {
	if err := s.Open(); err != nil {
		panic(err)
	}
	return s.URL(), func() { s.Close(context.Background()) }
}

// nullHandler decodes the same request the scorer does, checks the row width, and
// answers a constant, on the scorer's own HTTP server (fasthttp), reading and
// writing JSON with the scorer's own reader and writer: the cost of HTTP and
// JSON alone.
func nullHandler() *api.FastHandler {
	score := float32(0.5)
	return &api.FastHandler{MaxBodyBytes: 1 << 20, Serve: func(ctx *fasthttp.RequestCtx) {
		var req api.ScoreRequest
		ctx.SetContentType(echo.MIMEApplicationJSON)
		if err := api.DecodeScoreRequest(ctx.PostBody(), &req); err != nil || len(req.Features) != 39 {
			ctx.SetStatusCode(http.StatusBadRequest)
			json.NewEncoder(ctx).Encode(map[string]string{"error": "bad"})
			return
		}
		var buf [256]byte
		b, _ := api.AppendJSON(buf[:0], api.ScoreResponse{Model: "null", Score: &score, Source: api.SourceModel, Version: 1, Arm: api.ArmProduction})
		ctx.SetBody(b)
	}}
}

// echoNullHandler is nullHandler as an echo handler on net/http, the stack the
// control plane runs on, for reference.
func echoNullHandler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	score := float32(0.5)
	e.POST("/v1/score", func(c echo.Context) error {
		b, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
		if err != nil {
			return err
		}
		var req api.ScoreRequest
		if err := api.DecodeScoreRequest(b, &req); err != nil || len(req.Features) != 39 {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": "bad"})
		}
		return c.JSON(http.StatusOK, api.ScoreResponse{Model: "null", Score: &score, Source: api.SourceModel, Version: 1, Arm: api.ArmProduction})
	})
	return e
}

// scorer serves the real scoring API with the model loaded into its slot.
func scorer(path string, batching bool) (string, func(), *loader.Batcher, error) {
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		return "", nil, nil, err
	}
	served := api.NewServed("calling-score", fallback.CallingScore{})
	// Monitoring on, as a scorer node runs it: the shipped card's reference bins
	// every row, and model answers are remembered for feedback.
	raw, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "card.json"))
	card, err := artifact.ParseCard(raw)
	if err != nil {
		return "", nil, nil, err
	}
	served.Production.Swap(loader.NewLoaded(s, 1, "bench", card))
	sc := api.NewScorer(quiet, served)
	sc.Recorder = monitor.NewRecorder()
	sc.Recorder.SetReference(1, card)
	sc.Join = monitor.NewJoin(sc.Recorder, 100000)
	if batching {
		sc.Batcher = loader.NewBatcher(64, 500*time.Microsecond)
	}
	url, stop := serveFast(sc.Fast())
	return url, func() { stop(); served.Production.Close() }, sc.Batcher, nil
}

// constantRules answer every row with the same score.
type constantRules struct{}

func (constantRules) Features() int           { return 39 }
func (constantRules) Score([]float32) float32 { return 0.5 }

// modelless serves the scoring API with no session loaded, monitoring on: every
// answer comes from constant rules through the scorer's own decoding, checks,
// monitoring and encoding, so it costs everything the scorer does but ONNX
// Runtime.
func modelless() (string, func()) {
	sc := api.NewScorer(quiet, api.NewServed("calling-score", constantRules{}))
	sc.Recorder = monitor.NewRecorder()
	return serveFast(sc.Fast())
}

// bareHTTP answers every request on its keep-alive connections with response,
// reading each request with no HTTP library, no routing and no decoding: what
// loopback, the kernel and the load generator cost by themselves. No server can
// spend less per request.
func bareHTTP(response []byte) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	conns := map[net.Conn]bool{}
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReaderSize(c, 64<<10)
				for {
					n, err := requestLength(r)
					if err == nil {
						_, err = r.Discard(n)
					}
					if err == nil {
						_, err = c.Write(response)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// cannedFastHandler answers every request with the body of response on the
// scorer's HTTP server (fasthttp), after reading the request's body.
func cannedFastHandler(response []byte) *api.FastHandler {
	head, body, _ := bytes.Cut(response, []byte("\r\n\r\n"))
	headerLength := inferenceLength(head)
	return &api.FastHandler{MaxBodyBytes: 1 << 20, Serve: func(ctx *fasthttp.RequestCtx) {
		if len(ctx.PostBody()) == 0 {
			ctx.SetStatusCode(http.StatusBadRequest)
			return
		}
		ctx.SetContentType("application/octet-stream")
		ctx.Response.Header.Set(api.HeaderInferenceLength, headerLength)
		ctx.SetBody(body)
	}}
}

// inferenceLength is the Inference-Header-Content-Length of a raw response head.
func inferenceLength(head []byte) string {
	for _, l := range strings.Split(string(head), "\r\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && strings.EqualFold(k, api.HeaderInferenceLength) {
			return v
		}
	}
	return ""
}

// cannedHandler answers every request with the body of response on net/http,
// after reading the request's body.
func cannedHandler(response []byte) http.Handler {
	head, body, _ := bytes.Cut(response, []byte("\r\n\r\n"))
	headerLength := inferenceLength(head)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(api.HeaderInferenceLength, headerLength)
		w.Write(body)
	})
}

// requestLength reads one request's head and returns its Content-Length.
func requestLength(r *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return n, nil
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
}

// cannedResponse is a whole HTTP response: status line, headers and body, as the
// server at url answers body with headers.
func cannedResponse(url string, body []byte, headers map[string]string) ([]byte, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	var out bytes.Buffer
	err = resp.Write(&out)
	return out.Bytes(), err
}

// swapsPerWindow is how many promotions one swap window holds; the steady gaps
// between windows last as long.
const swapsPerWindow = 2

type swapResult struct {
	swaps, destroyed int
	// Latencies of requests sent inside the swap windows and outside them; the
	// failures and fallbacks of the whole run.
	duringP99, steadyP99           time.Duration
	duringRequests, steadyRequests int
	// windowsOver and gapsOver count the swap windows and the steady gaps whose
	// own p99 passes 1.5× the steady p99, of windows and gaps in all: a stall
	// of the machine falls on either kind alike, a cost of swapping on windows.
	windowsOver, gapsOver, windows, gaps int
	failed, fallbacks                    int
	took                                 time.Duration
	rssBefore, rssAfter                  float64
	// heapBefore and heapAfter are the Go heap in use at the same moments: what
	// RSS gained beyond it is C memory (ONNX Runtime's).
	heapBefore, heapAfter float64
	// threadsBefore and threadsAfter count OS threads: each thread that has run
	// ONNX Runtime keeps a little memory of its own.
	threadsBefore, threadsAfter int
	// rssTrend is the resident set size after every 10 swaps (no
	// collection first): a leak would climb with the swaps.
	rssTrend []float64
}

// hotSwap runs a control plane and a scorer node in this process and, under one
// paced load at rate, promotes two versions back and forth in windows between
// steady seconds, and compares the latencies inside the windows with the rest.
func hotSwap(o options, body []byte, rate float64) (swapResult, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "modelbench-*")
	if err != nil {
		return swapResult{}, err
	}
	defer os.RemoveAll(dir)
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen = filepath.Join(dir, "data"), "127.0.0.1:0"
	cfg.AdminToken = benchToken
	cp := app.NewControlPlane(cfg, quiet)
	if err := cp.Open(ctx); err != nil {
		return swapResult{}, err
	}
	defer cp.Close(ctx)
	cl := client.New(cp.URL())
	cl.Token = benchToken
	second := filepath.Join(dir, "v2.onnx")
	onnx, err := trainer.ExportONNX(trainer.NewMLP(7, 39, 128, 64, 1), trainer.ExportMeta{GraphName: "bench"})
	if err != nil {
		return swapResult{}, err
	}
	if err := os.WriteFile(second, onnx, 0o644); err != nil {
		return swapResult{}, err
	}
	card, _ := os.ReadFile(filepath.Join(filepath.Dir(o.model), "card.json"))
	for _, p := range []client.PushOptions{{Model: "calling-score", ArtifactPath: o.model, Card: card}, {Model: "calling-score", ArtifactPath: second}} {
		if _, err := cl.Push(ctx, p); err != nil {
			return swapResult{}, err
		}
	}
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 1}); err != nil {
		return swapResult{}, err
	}
	scfg := app.DefaultScorerConfig()
	scfg.ControlPlane, scfg.Listen, scfg.CacheDir = cp.URL(), "127.0.0.1:0", filepath.Join(dir, "cache")
	scfg.Token = benchToken
	// The feedback join is bounded; keep it small enough that the steady run fills
	// it, so the memory comparison sees the swaps and not the join filling up.
	scfg.FeedbackCapacity = 10000
	sc := app.NewScorer(scfg, quiet)
	if err := sc.Open(ctx); err != nil {
		return swapResult{}, err
	}
	defer sc.Close(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if v, _, _ := sc.Slot.Current(); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			return swapResult{}, fmt.Errorf("hot swap: the scorer never loaded v1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := sc.URL() + "/v1/score"
	res := swapResult{swaps: o.swaps}
	// Warm up before the memory baseline: connections, caches, the feedback join,
	// and one swap to each version, so that one-time costs (ONNX Runtime's first
	// session on the loader thread, its allocator arenas) are not counted as
	// what 100 swaps leave behind.
	warm, stopWarm := context.WithCancel(ctx)
	warmDone := make(chan loadResult)
	go func() { warmDone <- paced(warm, url, body, rate, time.Minute) }()
	for _, v := range []int{2, 1} {
		if err := promoteAndWait(ctx, cl, sc, v); err != nil {
			stopWarm()
			<-warmDone
			return swapResult{}, err
		}
		time.Sleep(o.duration / 4)
	}
	stopWarm()
	<-warmDone
	res.rssBefore = settledRSS()
	res.heapBefore = heapInUse()
	res.threadsBefore = threads()

	// One load run throughout, alternating a steady gap with a short window of
	// swapsPerWindow promotions, so that steady and swapping latencies come from
	// the same run under the same conditions; requests are told apart by when
	// they were sent. Windows and gaps are short and many, so that a stall of the
	// machine itself (a VM's stolen time can hold everything for tens of
	// milliseconds) falls on both kinds alike instead of deciding the comparison;
	// and each gap lasts as long as the window before it, so that both kinds hold
	// as many requests and a stall weighs as much on either's p99.
	steadyGap := swapsPerWindow * o.swapEvery
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	done := make(chan loadResult)
	go func() { done <- paced(loadCtx, url, body, rate, 10*time.Minute) }()
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
	// endWindow ends the open window, and sets the next gap to its length.
	endWindow := func() {
		w := &windows[len(windows)-1]
		w[1] = time.Now().UnixNano()
		steadyGap = time.Duration(w[1] - w[0])
	}
	start := time.Now()
	var next time.Time
	for i := 0; i < o.swaps; i++ {
		if i%swapsPerWindow == 0 {
			if i > 0 {
				endWindow()
			}
			pause()
			windows = append(windows, [2]int64{time.Now().UnixNano(), 0})
			next = time.Now()
		}
		time.Sleep(time.Until(next))
		next = next.Add(o.swapEvery)
		if err := promoteAndWait(ctx, cl, sc, 2-i%2); err != nil { // 2, 1, 2, 1, …
			return fail(fmt.Errorf("hot swap %d: %w", i, err))
		}
		if (i+1)%10 == 0 {
			res.rssTrend = append(res.rssTrend, rss())
		}
	}
	if len(windows) > 0 {
		endWindow()
	}
	pause()
	res.took = time.Since(start)
	stopLoad()
	all := <-done
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
	res.failed, res.fallbacks = all.Failed, all.Fallbacks
	// Only the summaries are kept: the latencies (the bench's memory, not the
	// scorer's) are garbage by the time memory is measured.
	res.rssAfter = settledRSS()
	res.heapAfter = heapInUse()
	res.threadsAfter = threads()
	res.destroyed = int(sc.Slot.Destroyed())
	return res, nil
}

// promoteAndWait promotes version v and waits until the scorer serves it.
func promoteAndWait(ctx context.Context, cl *client.Client, sc *app.Scorer, v int) error {
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: v}); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if cur, _, _ := sc.Slot.Current(); cur == v {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("v%d never served", v)
		}
	}
}

// settledRSS returns the resident set size after a collection.
func settledRSS() float64 {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	return rss()
}

// heapInUse returns the bytes of the Go heap in use.
func heapInUse() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}

// threads returns how many OS threads the process has.
func threads() int {
	return int(procStatus("Threads:"))
}

// rss returns the resident set size.
func rss() float64 { return procStatus("VmRSS:") * 1024 }

// procStatus reads a number from this process's /proc status (0 if absent).
func procStatus(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			var n float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &n)
			return n
		}
	}
	return 0
}

// rollbackRun promotes a version that answers NaN to two scorers under load, with
// the default policy and 1 s reports, and times how long until both serve the
// previous version again.
func rollbackRun(o options, body []byte) (time.Duration, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "modelbench-rb-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cfg := app.DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen = filepath.Join(dir, "data"), "127.0.0.1:0"
	cfg.AdminToken = benchToken
	cp := app.NewControlPlane(cfg, quiet)
	if err := cp.Open(ctx); err != nil {
		return 0, err
	}
	defer cp.Close(ctx)
	cl := client.New(cp.URL())
	cl.Token = benchToken
	mlp := trainer.NewMLP(3, 39, 8, 1)
	mlp.Layers[1].B[0] = float32(math.NaN())
	onnx, err := trainer.ExportONNX(mlp, trainer.ExportMeta{})
	if err != nil {
		return 0, err
	}
	bad := filepath.Join(dir, "nan.onnx")
	if err := os.WriteFile(bad, onnx, 0o644); err != nil {
		return 0, err
	}
	card, _ := os.ReadFile(filepath.Join(filepath.Dir(o.model), "card.json"))
	for _, p := range []client.PushOptions{{Model: "calling-score", ArtifactPath: o.model, Card: card}, {Model: "calling-score", ArtifactPath: bad}} {
		if _, err := cl.Push(ctx, p); err != nil {
			return 0, err
		}
	}
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 1}); err != nil {
		return 0, err
	}
	var scorers []*app.Scorer
	for i := 0; i < 2; i++ {
		scfg := app.DefaultScorerConfig()
		scfg.ControlPlane, scfg.Listen, scfg.CacheDir = cp.URL(), "127.0.0.1:0", filepath.Join(dir, fmt.Sprint("cache", i))
		scfg.Token = benchToken
		sc := app.NewScorer(scfg, quiet)
		if err := sc.Open(ctx); err != nil {
			return 0, err
		}
		defer sc.Close(ctx)
		scorers = append(scorers, sc)
	}
	on := func(v int) bool {
		for _, sc := range scorers {
			if cur, _, _ := sc.Slot.Current(); cur != v {
				return false
			}
		}
		return true
	}
	wait := func(v int) error {
		for deadline := time.Now().Add(30 * time.Second); !on(v); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("rollback run: scorers never all served v%d", v)
			}
		}
		return nil
	}
	if err := wait(1); err != nil {
		return 0, err
	}
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	for _, sc := range scorers {
		go paced(loadCtx, sc.URL()+"/v1/score", body, 300, time.Minute)
	}
	time.Sleep(3 * time.Second)
	start := time.Now()
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 2}); err != nil {
		return 0, err
	}
	if err := wait(2); err != nil {
		return 0, err
	}
	if err := wait(1); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// binaryRuns takes the scorer at scorerURL through 256-row OIP v2 binary
// requests in turns with its bounds, and returns what each saw in this order:
//   - the scorer;
//   - the same API with no model (constant rules answer): what it costs is
//     everything but ONNX Runtime, so the raw loop's time plus its time is the
//     most this machine allows the scorer;
//   - a server that does no work at all but read the request and write the
//     scorer's answer, as it was: the raw loop's time plus its time is the most
//     any server could reach here;
//   - the scorer's own HTTP server (fasthttp) doing the same: the most any
//     handler on it could reach, however little it did;
//   - when netHTTP, net/http doing the same: what a handler on it cannot go below.
func binaryRuns(o options, scorerURL string, netHTTP bool) ([]loadResult, error) {
	const infer = "/v2/models/calling-score/infer"
	binHeader, binBody := binaryBody()
	binHeaders := map[string]string{api.HeaderInferenceLength: fmt.Sprint(binHeader)}
	modellessURL, stopModelless := modelless()
	defer stopModelless()
	canned, err := cannedResponse(scorerURL+infer, binBody, binHeaders)
	if err != nil {
		return nil, err
	}
	bareURL, stopBare := bareHTTP(canned)
	defer stopBare()
	fastURL, stopFast := serveFast(cannedFastHandler(canned))
	defer stopFast()
	urls := []string{scorerURL + infer, modellessURL + infer, bareURL + infer, fastURL + infer}
	if netHTTP {
		netHTTPURL, stopNetHTTP := serve(cannedHandler(canned))
		defer stopNetHTTP()
		urls = append(urls, netHTTPURL+infer)
	}
	return turns(urls, binBody, binHeaders, o.conns/2, time.Duration(len(urls))*o.duration, 200*time.Millisecond), nil
}

// quick256 measures the 256-row binary contenders between two raw loops and
// prints one line.
func quick256(o options) error {
	before, err := rawLoop(o.model, 256, o.duration)
	if err != nil {
		return err
	}
	url, stop, _, err := scorer(o.model, false)
	if err != nil {
		return err
	}
	defer stop()
	bins, err := binaryRuns(o, url, false)
	if err != nil {
		return err
	}
	after, err := rawLoop(o.model, 256, o.duration)
	if err != nil {
		return err
	}
	raw := (before.runs + after.runs) / 2
	fmt.Printf("raw loop %.0f runs/s (%.0f, %.0f); scorer %.0f requests/s: %s of the raw loop (bounds: %s with the scorer's own work, %s with none on its HTTP server, %s with none at all); failed %d\n",
		raw, before.runs, after.runs, bins[0].rps(), pct(bins[0].rps()/raw), pct(1/(1+raw/bins[1].rps())), pct(1/(1+raw/bins[3].rps())), pct(1/(1+raw/bins[2].rps())), bins[0].Failed+bins[1].Failed+bins[2].Failed+bins[3].Failed)
	return nil
}
