// Command modelbench is `make bench`: in one run on this machine it measures what
// each server spends, as its process's CPU time over a load window divided by
// what it answered, for the real scorer, null-model handlers on echo and on
// fasthttp, and a raw onnxruntime_go loop, side by side under the same load;
// profiles the scorer on 256-row requests; then promotes 100 times under load
// and times the automatic rollback of a bad version. Every server is a process
// of its own (the real scorer and modelctl binaries, or this program
// re-executed as a child); the load generator is this process. All traffic goes
// to 127.0.0.1, bounded in time.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type options struct {
	model, lib           string
	scorerBin, modelctl  string
	duration             time.Duration
	rounds               int
	conns, conns256      int
	swaps                int
	swapEvery            time.Duration
	skipSwaps, noProfile bool
	rssModels            string
	rssOnly, grpcOnly    bool
	// fleet, when set, runs the fleet simulation only, for these node counts.
	fleet           string
	fleetWindow     time.Duration
	fleetPromotions int
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		if err := runChild(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "modelbench child:", err)
			os.Exit(1)
		}
		return
	}
	o := options{}
	flag.StringVar(&o.model, "model", "models/calling_score/model.onnx", "ONNX model to measure (its card.json beside it)")
	flag.StringVar(&o.lib, "onnxruntime-lib", envOr("ONNXRUNTIME_LIB", ".cache/onnxruntime/libonnxruntime.so.1"), "path of libonnxruntime.so (env ONNXRUNTIME_LIB)")
	flag.StringVar(&o.scorerBin, "scorer", "bin/scorer", "scorer binary (make build)")
	flag.StringVar(&o.modelctl, "modelctl", "bin/modelctl", "modelctl binary (make build)")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "load time per contender in each measured run, split into rounds")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds each measured run is split into, the contenders taking turns in each")
	flag.IntVar(&o.conns, "conns", 32, "connections for single-row maximum-load runs")
	flag.IntVar(&o.conns256, "conns256", 4, "connections for 256-row runs")
	flag.IntVar(&o.swaps, "swaps", 100, "promotions in the hot-swap run")
	flag.DurationVar(&o.swapEvery, "swap-every", 150*time.Millisecond, "time between promotions in the hot-swap run")
	flag.BoolVar(&o.skipSwaps, "skip-swaps", false, "measure the costs only: no hot-swap or rollback run")
	flag.BoolVar(&o.noProfile, "no-profile", false, "do not profile the scorer with perf")
	flag.StringVar(&o.rssModels, "rss-models", "1,10,50", "measure the scorer's RSS serving each of these counts of models (empty: skip)")
	flag.BoolVar(&o.rssOnly, "rss-only", false, "measure the scorer's RSS for -rss-models only")
	flag.BoolVar(&o.grpcOnly, "grpc-only", false, "measure the gRPC contenders only (scorer, null gRPC server, raw loops), then profile the scorer on gRPC")
	flag.StringVar(&o.fleet, "fleet", "", "simulate fleets of these many scorer nodes (comma-separated, e.g. 100,1000,5000) against one control plane, and nothing else")
	flag.DurationVar(&o.fleetWindow, "fleet-window", 10*time.Second, "how long the fleet's steady reporting is measured")
	flag.IntVar(&o.fleetPromotions, "fleet-promotions", 5, "promotions timed to every watcher in a fleet run")
	flag.Parse()
	if o.fleet != "" {
		sizes, err := fleetSizes(o.fleet)
		if err == nil {
			err = runFleet(o, sizes)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "modelbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// features is row i of the requests (39 values).
func features(i int) []float32 {
	r := make([]float32, 39)
	for j := range r {
		r[j] = float32(i)/512 + float32(j)/100
	}
	return r
}

// binaryBody is a 256-row OIP v2 request with the binary tensor extension: the
// JSON header's length and the whole body.
func binaryBody() (int, []byte) {
	data := make([]byte, 0, 256*39*4)
	for i := 0; i < 256; i++ {
		for _, v := range features(i) {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
	}
	header := []byte(fmt.Sprintf(`{"inputs":[{"name":"input","shape":[256,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(data)))
	return len(header), append(header, data...)
}

// jsonBodies are a one-row and a 256-row /v1/score request.
func jsonBodies() (single, multi []byte) {
	single, _ = json.Marshal(map[string]any{"features": features(153)})
	rows := make([][]float32, 256)
	for i := range rows {
		rows[i] = features(i)
	}
	multi, _ = json.Marshal(map[string]any{"rows": rows})
	return single, multi
}

// contender is a server under load: its process and what it spent and saw.
type contender struct {
	name string
	p    *proc
	path string
	// grpcBody, when set, is the ModelInferRequest sent to grpcAddr instead.
	grpcAddr string
	grpcBody []byte
	// jsonRows: a 256-row run sends /v1/score JSON rows, not binary tensors.
	jsonRows bool
	// cost and res add up its windows in the run being measured.
	cost cost
	res  loadResult
}

// bench holds the processes of one run.
type bench struct {
	o     options
	dir   string
	token string
	procs []*proc
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	b.procs = nil
}

func (b *bench) keep(p *proc) *proc {
	b.procs = append(b.procs, p)
	return p
}

func run(o options) error {
	for _, f := range []string{o.model, o.lib, o.scorerBin, o.modelctl} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (make bench builds bin/ and fetches ONNX Runtime first)", err)
		}
	}
	dir, err := os.MkdirTemp("", "modelbench-*")
	if err != nil {
		return err
	}
	if os.Getenv("MODELBENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "modelbench: keeping the logs in", dir)
	}
	b := &bench{o: o, dir: dir}
	defer b.stopAll()
	tok, err := exec.Command(o.modelctl, "token", "new").Output()
	if err != nil {
		return fmt.Errorf("modelctl token new: %w", err)
	}
	b.token = strings.TrimSpace(string(tok))

	fmt.Printf("modelbench: %s, %d CPUs (%s), servers and load generator sharing them; %s per contender per run in %d rounds; %s\n\n",
		runtime.Version(), runtime.NumCPU(), cpuName(), o.duration, o.rounds, loadAverage())
	counts, err := parseModelCounts(o.rssModels)
	if err != nil {
		return err
	}
	if len(counts) > 0 {
		pts, err := b.rssRun(counts)
		if err != nil {
			return err
		}
		printRSS(pts)
		fmt.Println()
	}
	if o.rssOnly {
		return nil
	}
	if o.grpcOnly {
		return b.grpcRun()
	}
	statBefore := procStat()

	cp, err := b.controlPlane("control-plane")
	if err != nil {
		return err
	}
	if err := b.push(cp, "calling-score", o.model, true); err != nil {
		return err
	}
	if err := b.promote(cp, "calling-score", 1); err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	sc, err := b.scorer(cp, "scorer", "--grpc-listen", grpcAddr)
	if err != nil {
		return err
	}
	scNoBatch, err := b.scorer(cp, "scorer-nobatch", "--batch-max-rows", "0")
	if err != nil {
		return err
	}
	// The same scorer with the JSON library in place of the hand-written codec
	// (issue 19 keeps the hand codec only while it is ≥ 10% cheaper end to end).
	scLib, err := b.scorer(cp, "scorer-libjson", "--json-codec", "library")
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	echoNull, err := startServer(dir, "null-echo", exe, []string{"-child", "null-echo", "ADDR"}, nil, "/healthz")
	if err != nil {
		return err
	}
	b.keep(echoNull)
	fastNull, err := startServer(dir, "null-fasthttp", exe, []string{"-child", "null-fasthttp", "ADDR"}, nil, "/healthz")
	if err != nil {
		return err
	}
	b.keep(fastNull)
	grpcNull, grpcNullAddr, err := startNullGRPC(dir)
	if err != nil {
		return err
	}
	b.keep(grpcNull)
	raw1, err := startRawLoop(dir, o.lib, o.model, 1)
	if err != nil {
		return err
	}
	b.keep(raw1.proc)
	raw256, err := startRawLoop(dir, o.lib, o.model, 256)
	if err != nil {
		return err
	}
	b.keep(raw256.proc)

	single, multi := jsonBodies()
	binHeader, binBody := binaryBody()
	binHeaders := map[string]string{"Inference-Header-Content-Length": strconv.Itoa(binHeader)}
	const infer = "/v2/models/calling-score/infer"

	singles := []*contender{
		{name: "null-model handler, echo v4 + net/http, encoding/json", p: echoNull, path: "/v1/score"},
		{name: "null-model handler, fasthttp, encoding/json", p: fastNull, path: "/v1/score"},
		{name: "scorer (micro-batching on, the default)", p: sc, path: "/v1/score"},
		{name: "scorer (micro-batching off)", p: scNoBatch, path: "/v1/score"},
		{name: "scorer, OIP v2 gRPC raw contents (micro-batching on)", p: sc, grpcAddr: grpcAddr, grpcBody: grpcRequest(1)},
		{name: "null gRPC server, the scorer's transport options", p: grpcNull, grpcAddr: grpcNullAddr, grpcBody: grpcRequest(1)},
		{name: "scorer, JSON by goccy/go-json instead of the hand codec", p: scLib, path: "/v1/score"},
	}
	// Warm every server up: connections, heaps, ONNX Runtime's arenas.
	for _, c := range singles {
		if _, err := loadAny(context.Background(), c.spec(loadSpec{Body: single, Conns: o.conns, Duration: 500 * time.Millisecond})); err != nil {
			return err
		}
	}
	if _, err := load(context.Background(), loadSpec{URL: sc.url + infer, Body: binBody, Headers: binHeaders, Conns: o.conns256, Duration: 500 * time.Millisecond}); err != nil {
		return err
	}

	// Single row at maximum load: each contender as fast as a closed loop of
	// o.conns connections takes it, in turns, round after round.
	window := o.duration / time.Duration(o.rounds)
	raw1Max, err := b.rounds(singles, loadSpec{Body: single, Conns: o.conns, Duration: window}, 1, raw1)
	if err != nil {
		return err
	}
	maxLoad := resetContenders(singles)
	// The same rate for every contender: half what the slowest took at maximum
	// load, so each answers the same requests at the same pace.
	rate := math.Inf(1)
	for _, r := range maxLoad[:4] { // the HTTP contenders, as before gRPC joined
		rate = min(rate, r.res.rps())
	}
	rate = math.Round(rate / 2)
	raw1Paced, err := b.rounds(singles, loadSpec{Body: single, Rate: rate, Conns: pacedConns(rate), Duration: window}, 1, raw1)
	if err != nil {
		return err
	}
	sameRate := resetContenders(singles)

	// 256 rows: OIP v2 binary tensors and /v1/score JSON to the scorer, in turns
	// with the raw loop at batch 256.
	many := []*contender{
		{name: "scorer, OIP v2 binary FP32 tensors", p: sc, path: infer},
		{name: "scorer, /v1/score JSON rows", p: sc, path: "/v1/score"},
		{name: "scorer, OIP v2 gRPC raw contents", p: sc, grpcAddr: grpcAddr, grpcBody: grpcRequest(256)},
		{name: "null gRPC server, the scorer's transport options", p: grpcNull, grpcAddr: grpcNullAddr, grpcBody: grpcRequest(256)},
		{name: "scorer, /v1/score JSON rows, goccy/go-json codec", p: scLib, path: "/v1/score", jsonRows: true},
		{name: "scorer, OIP v2 binary FP32 tensors, goccy/go-json codec", p: scLib, path: infer},
		{name: "null handler, fasthttp: reads the same binary body, answers a constant", p: fastNull, path: infer},
	}
	many[1].jsonRows = true
	rawMany := cost{}
	for r := 0; r < o.rounds; r++ {
		c, err := raw256.window(window)
		if err != nil {
			return err
		}
		rawMany = rawMany.add(c)
		for _, ct := range many {
			spec := loadSpec{URL: ct.p.url + ct.path, Body: binBody, Headers: binHeaders, Conns: o.conns256, Duration: window}
			if ct.jsonRows {
				spec.Body, spec.Headers = multi, nil
			}
			if err := b.measure(ct, ct.spec(spec), 256); err != nil {
				return err
			}
		}
	}
	busy := machineShares(statBefore, procStat())

	var prof *profile
	var profErr error
	if !o.noProfile {
		prof, profErr = b.profileScorer(sc, loadSpec{URL: sc.url + infer, Body: binBody, Headers: binHeaders, Conns: o.conns256, Duration: 3 * time.Second})
	}
	b.stopAll()

	printCosts(o, maxLoad, sameRate, raw1Max.add(raw1Paced), many, rawMany, rate, busy)
	if prof != nil {
		prof.print(many[0].cost, rawMany.perRequest())
	} else if !o.noProfile {
		fmt.Printf("\nno profile of the scorer: %v (the scorer serves no /debug/pprof; perf records the process from outside)\n", profErr)
	}

	var targets []target
	echoPer, fastPer, scorerPer := sameRate[0].cost.perRequest(), sameRate[1].cost.perRequest(), sameRate[2].cost.perRequest()
	targets = append(targets,
		target{"single row: null echo handler's CPU/request ÷ scorer's, same rate", ratio(echoPer, scorerPer, 0.85)},
		target{"single row, the same at maximum load (reference)", ratio(maxLoad[0].cost.perRequest(), maxLoad[2].cost.perRequest(), 0.85)},
		target{"256 rows, OIP v2 binary: raw loop's CPU/row ÷ scorer's", ratio(rawMany.perRow(), many[0].cost.perRow(), 0.60)},
		target{"256 rows, OIP v2 gRPC raw contents: raw loop's CPU/row ÷ scorer's", ratio(rawMany.perRow(), many[2].cost.perRow(), 0.60)},
	)
	printGRPCFloor(rawMany, many[2].cost, many[3].cost, sameRate[4].cost, sameRate[5].cost)
	targets = append(targets,
		// The best raw ÷ scorer this HTTP stack allows: the raw loop's run plus
		// only reading the body and writing an answer on fasthttp.
		target{"256 rows, OIP v2 binary: ceiling on fasthttp, raw loop ÷ (raw loop + null fasthttp handler), per request", ratio(rawMany.perRequest(), rawMany.perRequest()+many[6].cost.perRequest(), 0.60)},
	)
	codecLine := func(what string, hand, lib time.Duration) {
		if hand <= 0 || lib <= 0 {
			return
		}
		saved := 1 - float64(hand)/float64(lib)
		fmt.Printf("JSON codec, %s: hand %s vs goccy/go-json %s a request, the hand codec %.0f%% cheaper: %s\n", what, us(hand), us(lib), 100*saved,
			map[bool]string{true: "≥ 10%, by issue 19's rule the hand codec stays", false: "< 10%, by issue 19's rule the library replaces it"}[saved >= 0.10])
	}
	fmt.Println()
	codecLine("single row /v1/score, same rate", scorerPer, sameRate[6].cost.perRequest())
	codecLine("256 rows /v1/score JSON", many[1].cost.perRequest(), many[4].cost.perRequest())
	codecLine("256 rows OIP v2 binary (JSON header only)", many[0].cost.perRequest(), many[5].cost.perRequest())
	echoOverFast := float64(echoPer)/float64(fastPer) - 1
	fmt.Printf("\necho v4 + net/http against fasthttp, the same null handler at the same rate: %s vs %s a request, echo costs %+.0f%% (%+.0f%% at maximum load): %s\n",
		us(echoPer), us(fastPer), 100*echoOverFast, 100*(float64(maxLoad[0].cost.perRequest())/float64(maxLoad[1].cost.perRequest())-1),
		map[bool]string{true: "at least 20% more: by issue 19's rule the scorer serves on fasthttp, as it does", false: "less than 20% more, so by issue 19's rule the scorer stays on echo"}[echoOverFast >= 0.2])

	if !o.skipSwaps {
		swap, err := b.hotSwap(single, rate)
		if err != nil {
			return err
		}
		rb, err := b.rollbackRun(single)
		if err != nil {
			return err
		}
		targets = append(targets,
			target{fmt.Sprintf("%d swaps: no failed request", swap.swaps), met(fmt.Sprint(swap.failed), swap.failed == 0)},
			target{fmt.Sprintf("%d swaps: no swap-caused fallback", swap.swaps), met(fmt.Sprint(swap.fallbacks), swap.fallbacks == 0)},
			target{"p99 during swaps ≤ 1.5× steady p99", met(fmt.Sprintf("%s vs %s (%.2f×)", us(swap.duringP99), us(swap.steadyP99), float64(swap.duringP99)/float64(swap.steadyP99)), swap.duringP99 <= swap.steadyP99*3/2)},
			target{"scorer's memory after the swaps within 10 MB of before", met(fmt.Sprintf("%+.1f MB (RSS %.1f → %.1f MB)", (swap.rssAfter-swap.rssBefore)/1e6, swap.rssBefore/1e6, swap.rssAfter/1e6), swap.rssAfter-swap.rssBefore <= 10e6)},
			target{"bad promotion rolled back on both scorers within 5 s (1 s reports)", met(rb.Round(time.Millisecond).String(), rb < 5*time.Second)},
		)
		defer swap.print(b.o, rate)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tmet")
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.name, t.got, yes(t.ok))
	}
	tw.Flush()
	return nil
}

type target struct {
	name string
	outcome
}

type outcome struct {
	got string
	ok  bool
}

func met(got string, ok bool) outcome { return outcome{got, ok} }

// ratio is a ÷ b against a goal.
func ratio(a, b time.Duration, goal float64) outcome {
	if b <= 0 {
		return outcome{"nothing measured", false}
	}
	r := float64(a) / float64(b)
	return outcome{fmt.Sprintf("%.2f (%s ÷ %s; goal ≥ %.2f)", r, us(a), us(b), goal), r >= goal}
}

// rounds runs spec against each contender in turn, then a window of raw loop
// of the same length, round after round, adding up each one's cost.
func (b *bench) rounds(cs []*contender, spec loadSpec, rows int, raw *rawLoop) (cost, error) {
	var rawCost cost
	for r := 0; r < b.o.rounds; r++ {
		for _, c := range cs {
			if err := b.measure(c, c.spec(spec), rows); err != nil {
				return cost{}, err
			}
		}
		rc, err := raw.window(spec.Duration)
		if err != nil {
			return cost{}, err
		}
		rawCost = rawCost.add(rc)
	}
	return rawCost, nil
}

// measure runs spec against c and adds the window's cost to c's.
func (b *bench) measure(c *contender, spec loadSpec, rows int) error {
	m, err := startMeter(c.p.pid())
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	res, err := loadAny(context.Background(), spec)
	if err != nil {
		return err
	}
	got, err := m.stop(res.Requests-res.Failed, (res.Requests-res.Failed)*rows)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.cost = c.cost.add(got)
	c.res = merge(c.res, res)
	return nil
}

// spec is spec aimed at c: its URL and path, or its gRPC address and request.
func (c *contender) spec(spec loadSpec) loadSpec {
	if c.grpcAddr != "" {
		spec.URL, spec.Body, spec.Headers = grpcScheme+c.grpcAddr, c.grpcBody, nil
		return spec
	}
	spec.URL = c.p.url + c.path
	return spec
}

// resetContenders returns a copy of cs as measured and clears their sums.
func resetContenders(cs []*contender) []contender {
	out := make([]contender, len(cs))
	for i, c := range cs {
		out[i] = *c
		c.cost, c.res = cost{}, loadResult{}
	}
	return out
}

// pacedConns gives every connection about 5 ms between its requests, so one slow
// answer rarely holds up the next request due on the same connection.
func pacedConns(rate float64) int { return max(4, min(256, int(rate/200))) }

func printCosts(o options, maxLoad, sameRate []contender, raw1 cost, many []*contender, raw256 cost, rate float64, busy string) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	head := func(title string) {
		fmt.Fprintf(tw, "%s\tCPU/request\tCPU/row\tin kernel\trequests/s\tp50\tp99\tfailed\t\n", title)
	}
	line := func(c contender, rows int) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%d\t\n", c.name, us(c.cost.perRequest()), us(c.cost.perRow()), pct(c.cost.sysShare()), c.res.rps(), us(c.res.quantile(.5)), us(c.res.quantile(.99)), c.res.Failed)
	}
	head(fmt.Sprintf("single row, maximum load (closed loop, %d connections)", o.conns))
	for _, c := range maxLoad {
		line(c, 1)
	}
	head(fmt.Sprintf("single row, the same rate for all (%.0f requests/s, half the slowest's maximum)", rate))
	for _, c := range sameRate {
		line(c, 1)
	}
	fmt.Fprintf(tw, "  raw onnxruntime_go loop, batch 1 (one thread, no HTTP)\t%s\t%s\t%s\t%.0f\t\t\t\t\n", us(raw1.perRequest()), us(raw1.perRow()), pct(raw1.sysShare()), float64(raw1.requests)/(2*o.duration.Seconds()))
	head(fmt.Sprintf("256 rows (closed loop, %d connections)", o.conns256))
	for _, c := range many {
		line(*c, 256)
	}
	fmt.Fprintf(tw, "  raw onnxruntime_go loop, batch 256 (one thread, no HTTP)\t%s\t%s\t%s\t%.0f\t\t\t\t\n", us(raw256.perRequest()), us(raw256.perRow()), pct(raw256.sysShare()), float64(raw256.requests)/o.duration.Seconds())
	tw.Flush()
	fmt.Printf("CPU is the server process's user + system time (all threads, /proc/PID/stat) over its windows, divided by what it answered (the raw loops: by session runs and rows); \"in kernel\" is the system time's share. Rates and latencies are not targets. During these runs: %s.\n", busy)
}

// us prints a duration in microseconds.
func us(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2f µs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

// controlPlane starts `modelctl serve` with the bench's admin token and any
// extra flags.
func (b *bench) controlPlane(name string, flags ...string) (*proc, error) {
	p, err := startServer(b.dir, name, b.o.modelctl, append([]string{"serve", "--data", filepath.Join(b.dir, name), "--listen", "ADDR"}, flags...),
		[]string{"MODELOPS_ADMIN_TOKEN=" + b.token, "ONNXRUNTIME_LIB=" + b.o.lib}, "/healthz")
	if err != nil {
		return nil, err
	}
	return b.keep(p), nil
}

// scorer starts a scorer node following cp, with extra flags and a scorer
// token of its own, as a node runs.
func (b *bench) scorer(cp *proc, name string, flags ...string) (*proc, error) {
	cmd := exec.Command(b.o.modelctl, "token", "create", "--name", name, "--role", "scorer")
	cmd.Env = append(os.Environ(), "MODELCTL_SERVER="+cp.url, "MODELCTL_TOKEN="+b.token)
	tok, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("modelctl token create %s: %w", name, err)
	}
	args := append([]string{"--control-plane", cp.url, "--model", "calling-score", "--listen", "ADDR", "--grpc-listen", "", "--cache-dir", filepath.Join(b.dir, name+"-cache")}, flags...)
	p, err := startServer(b.dir, name, b.o.scorerBin, args, []string{"MODELOPS_SCORER_TOKEN=" + strings.TrimSpace(string(tok)), "ONNXRUNTIME_LIB=" + b.o.lib}, "/readyz")
	if err != nil {
		return nil, err
	}
	return b.keep(p), nil
}

// push pushes the artifact at path with modelctl, with the shipped model's card
// when withCard.
func (b *bench) push(cp *proc, model, path string, withCard bool) error {
	args := []string{"push", path, "--model", model}
	if withCard {
		args = append(args, "--card", filepath.Join(filepath.Dir(b.o.model), "card.json"))
	}
	cmd := exec.Command(b.o.modelctl, args...)
	cmd.Env = append(os.Environ(), "MODELCTL_SERVER="+cp.url, "MODELCTL_TOKEN="+b.token)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("modelctl push %s: %w: %s", path, err, out)
	}
	return nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// promote promotes version v of model through the control plane's API.
func (b *bench) promote(cp *proc, model string, v int) error {
	return b.call(cp, http.MethodPost, "/api/v1/models/"+model+"/promote", map[string]any{"version": v, "reason": "modelbench"})
}

// call sends body as JSON to the control plane's API with the admin token.
func (b *bench) call(cp *proc, method, path string, body any) error {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, cp.url+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s %s: %s: %s", method, path, raw, resp.Status, answer)
	}
	return nil
}

// served is the version of model a scorer serves, from its /v1/status (0 if
// none or unknown).
func served(sc *proc, model string) int {
	resp, err := httpClient.Get(sc.url + "/v1/status")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Models []struct {
			Model   string `json:"model"`
			Version int    `json:"version"`
		} `json:"models"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 0
	}
	for _, m := range st.Models {
		if m.Model == model {
			return m.Version
		}
	}
	return 0
}

// waitServed waits until every scorer serves version v of model.
func waitServed(model string, v int, timeout time.Duration, scorers ...*proc) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(2 * time.Millisecond) {
		all := true
		for _, sc := range scorers {
			if served(sc, model) != v {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s v%d not served by every scorer after %s", model, v, timeout)
		}
	}
}

// machineShares describes how the whole machine spent the time between two
// readings of /proc/stat.
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

// procStat reads the machine's CPU time so far from /proc/stat, in clock ticks:
// user, nice, system, idle, iowait, irq, softirq, steal.
func procStat() [8]int64 {
	var v [8]int64
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	for i := range v {
		if i+1 < len(f) {
			v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
	}
	return v
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return "load average before " + strings.Join(f[:3], " ")
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
