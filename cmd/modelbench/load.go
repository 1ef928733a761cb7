package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The load generator runs in a child process (modelbench re-executed with
// -load-child) so that its goroutines, allocations and collections are not
// charged to the servers measured in this one. It speaks HTTP/1.1 over plain
// keep-alive connections with a request prebuilt once, so it costs a few
// microseconds a request, the way wrk does, rather than the tens that
// net/http's client takes; what the table measures is the server.

// loadSpec is one load run, sent to the child as JSON on its stdin.
type loadSpec struct {
	URL      string            `json:"url"`
	Body     []byte            `json:"body"`
	Headers  map[string]string `json:"headers,omitempty"`
	Conns    int               `json:"conns"`
	Duration time.Duration     `json:"duration"`
	// Rate, when above 0, paces requests at this many a second (open loop);
	// 0 runs every connection back to back (closed loop, maximum load).
	Rate float64 `json:"rate,omitempty"`
	// URLs, when set, replace URL: the run takes them in turns of Slice and
	// reports each apart (closed, every connection on the same one at a time;
	// paced, each request to the one whose turn it is when it is due).
	// Contenders measured together see the same machine at the same moments, so
	// a hypervisor's stolen time or a neighbour's burst falls on all.
	URLs  []string      `json:"urls,omitempty"`
	Slice time.Duration `json:"slice,omitempty"`
	// CPUs, when set, are the only CPUs the generator runs on.
	CPUs []int `json:"cpus,omitempty"`
}

// loadResult is what one load run saw.
type loadResult struct {
	Requests  int             `json:"requests"`
	Failed    int             `json:"failed"` // transport errors and non-2xx
	Fallbacks int             `json:"fallbacks"`
	Elapsed   time.Duration   `json:"elapsed"`
	Latencies []time.Duration `json:"latencies"`
	// Sent holds, for each latency, when its request was due (Unix nanoseconds).
	Sent []int64 `json:"sent"`
	// FirstError is the first failure's description, for the log.
	FirstError string `json:"first_error,omitempty"`
}

func (r loadResult) rps() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.Latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// merge adds up runs of the same kind (interleaved rounds).
func merge(rs ...loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.Requests += r.Requests
		m.Failed += r.Failed
		m.Fallbacks += r.Fallbacks
		m.Elapsed += r.Elapsed
		m.Latencies = append(m.Latencies, r.Latencies...)
		m.Sent = append(m.Sent, r.Sent...)
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	return m
}

// split divides r's requests into those sent inside one of windows (pairs of Unix
// nanoseconds, start and end) and the rest; elapsed is shared out by request count.
func (r loadResult) split(windows [][2]int64) (in, out loadResult) {
	for i, lat := range r.Latencies {
		dst := &out
		for _, w := range windows {
			if r.Sent[i] >= w[0] && r.Sent[i] < w[1] {
				dst = &in
				break
			}
		}
		dst.Latencies = append(dst.Latencies, lat)
		dst.Sent = append(dst.Sent, r.Sent[i])
	}
	in.Requests, out.Requests = len(in.Latencies), len(out.Latencies)
	if r.Requests > 0 {
		in.Elapsed = r.Elapsed * time.Duration(in.Requests) / time.Duration(r.Requests)
		out.Elapsed = r.Elapsed - in.Elapsed
	}
	return in, out
}

// within returns the latencies of the requests due in span (Unix nanoseconds,
// from inclusive, to exclusive).
func (r loadResult) within(span [2]int64) loadResult {
	var in loadResult
	for i, lat := range r.Latencies {
		if r.Sent[i] >= span[0] && r.Sent[i] < span[1] {
			in.Latencies = append(in.Latencies, lat)
			in.Sent = append(in.Sent, r.Sent[i])
		}
	}
	in.Requests = len(in.Latencies)
	return in
}

// load runs spec in a child process and returns what it saw. Cancelling ctx ends
// the run early (the child stops when its stdin closes).
func load(ctx context.Context, spec loadSpec) (loadResult, error) {
	var res loadResult
	return res, runChild(ctx, spec, &res)
}

// runChild runs spec in a child process and decodes what it printed into res.
func runChild(ctx context.Context, spec loadSpec, res any) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	before, statBefore := selfCPU(), procStat()
	cmd := exec.Command(exe, "-load-child")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	spec.CPUs = generatorCPUs
	if err := json.NewEncoder(stdin).Encode(spec); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		stdin.Close()
	}()
	err = cmd.Wait()
	close(stopped)
	if os.Getenv("MODELBENCH_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "load %s%v: generator CPU user %s sys %s; servers' CPU %s\n", spec.URL, spec.URLs, cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime(), selfCPU()-before)
		fmt.Fprintf(os.Stderr, "  %s\n", machineShares(statBefore, procStat()))
	}
	if err != nil {
		return fmt.Errorf("load generator: %w", err)
	}
	if err := json.Unmarshal(stdout.Bytes(), res); err != nil {
		return fmt.Errorf("load generator output: %w", err)
	}
	return nil
}

// mustLoad is load for runs whose failure ends the benchmark.
func mustLoad(ctx context.Context, spec loadSpec) loadResult {
	r, err := load(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
	return r
}

// closedLoop runs conns connections back to back for d: the maximum load.
func closedLoop(url string, body []byte, headers map[string]string, conns int, d time.Duration) loadResult {
	return mustLoad(context.Background(), loadSpec{URL: url, Body: body, Headers: headers, Conns: conns, Duration: d})
}

// turns runs a closed loop on each of urls in turns of slice for d in all (each
// gets about d/len(urls)) and returns each one's result.
func turns(urls []string, body []byte, headers map[string]string, conns int, d, slice time.Duration) []loadResult {
	var res []loadResult
	if err := runChild(context.Background(), loadSpec{URLs: urls, Body: body, Headers: headers, Conns: conns, Duration: d, Slice: slice}, &res); err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
	return res
}

// paced sends requests at rate per second, open loop, for d or until ctx ends, so
// latency is measured at a chosen load rather than at saturation.
func paced(ctx context.Context, url string, body []byte, rate float64, d time.Duration) loadResult {
	return mustLoad(ctx, loadSpec{URL: url, Body: body, Conns: pacedConns(rate), Duration: d, Rate: rate})
}

// pacedTurns sends requests at rate per second, open loop, for d in all, to each
// of urls in turns of slice, and returns each one's result.
func pacedTurns(urls []string, body []byte, rate float64, d, slice time.Duration) []loadResult {
	var res []loadResult
	if err := runChild(context.Background(), loadSpec{URLs: urls, Body: body, Conns: pacedConns(rate), Duration: d, Rate: rate, Slice: slice}, &res); err != nil {
		fmt.Fprintln(os.Stderr, "modelbench:", err)
		os.Exit(1)
	}
	return res
}

// pacedConns gives every connection about 5 ms between its requests, so one slow
// answer rarely holds up the next request due on the same connection.
func pacedConns(rate float64) int { return max(4, min(256, int(rate/200))) }

// loadChild is the child process: it reads a loadSpec from stdin, runs it until
// its duration ends or stdin closes, and writes the loadResult to stdout.
func loadChild() error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the load spec: %w", err)
	}
	var spec loadSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	// The generator allocates little (a latency slice per connection); without
	// collections its own pauses stay out of the latencies it measures.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(1 << 30)
	if len(spec.CPUs) > 0 {
		if err := pinTo(spec.CPUs); err != nil {
			return fmt.Errorf("pinning to CPUs %v: %w", spec.CPUs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Duration)
	defer cancel()
	go func() {
		io.Copy(io.Discard, in)
		cancel()
	}()
	var res []loadResult
	if len(spec.URLs) > 0 && spec.Rate <= 0 {
		res, err = alternate(ctx, spec)
	} else {
		res, err = generate(ctx, spec)
	}
	if err != nil {
		return err
	}
	if len(spec.URLs) == 0 {
		return json.NewEncoder(os.Stdout).Encode(res[0])
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// request is the HTTP/1.1 request spec sends to target, and target's host.
func request(target string, spec loadSpec) (host string, req []byte, err error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(spec.Body))
	for k, v := range spec.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.Write(spec.Body)
	return u.Host, b.Bytes(), nil
}

// alternate runs spec's closed loop on each of spec.URLs in turn, a slice at a
// time, until ctx ends, and returns what each saw. A request goes to the target
// whose turn it is when it is sent; a target's elapsed time is the sum of its
// turns.
func alternate(ctx context.Context, spec loadSpec) ([]loadResult, error) {
	n := len(spec.URLs)
	hosts, reqs := make([]string, n), make([][]byte, n)
	for i, target := range spec.URLs {
		var err error
		if hosts[i], reqs[i], err = request(target, spec); err != nil {
			return nil, err
		}
	}
	var turn atomic.Int32
	results := make([][]loadResult, spec.Conns)
	var wg sync.WaitGroup
	for k := range spec.Conns {
		results[k] = make([]loadResult, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := make([]*httpConn, n)
			for i := range conns {
				conns[i] = &httpConn{host: hosts[i], body: make([]byte, 0, 64<<10)}
				defer conns[i].close()
			}
			for ctx.Err() == nil {
				t := turn.Load()
				conns[t].exchange(reqs[t], time.Now(), &results[k][t])
			}
		}()
	}
	elapsed := make([]time.Duration, n)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for t := 0; ctx.Err() == nil; t = (t + 1) % n {
		turn.Store(int32(t))
		start := time.Now()
		timer.Reset(max(spec.Slice, 10*time.Millisecond))
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		elapsed[t] += time.Since(start)
	}
	wg.Wait()
	out := make([]loadResult, n)
	for t := range out {
		per := make([]loadResult, spec.Conns)
		for k := range per {
			per[k] = results[k][t]
		}
		out[t] = merge(per...)
		out[t].Requests = len(out[t].Latencies)
		out[t].Elapsed = elapsed[t]
	}
	return out, nil
}

// generate runs spec's connections and gathers what they saw: one result for
// spec.URL, or one for each of spec.URLs (paced in turns).
func generate(ctx context.Context, spec loadSpec) ([]loadResult, error) {
	targets := spec.URLs
	if len(targets) == 0 {
		targets = []string{spec.URL}
	}
	g := &generator{hosts: make([]string, len(targets)), requests: make([][]byte, len(targets)), spec: spec, start: time.Now()}
	for i, target := range targets {
		var err error
		if g.hosts[i], g.requests[i], err = request(target, spec); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	results := make([][]loadResult, spec.Conns)
	for k := range spec.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = g.connection(ctx, k)
		}()
	}
	wg.Wait()
	el := time.Since(g.start)
	out := make([]loadResult, len(targets))
	for t := range out {
		per := make([]loadResult, spec.Conns)
		for k := range per {
			per[k] = results[k][t]
		}
		out[t] = merge(per...)
		out[t].Elapsed = el
		if len(targets) > 1 {
			out[t].Elapsed = turnTime(el, spec.Slice, len(targets), t)
		}
	}
	return out, nil
}

// turnTime is how much of el the turns of target t held, turns of slice going
// round n targets from target 0.
func turnTime(el, slice time.Duration, n, t int) time.Duration {
	full := int(el / slice)
	d := time.Duration(full/n) * slice
	if full%n > t {
		d += slice
	} else if full%n == t {
		d += el - time.Duration(full)*slice
	}
	return d
}

type generator struct {
	hosts    []string
	requests [][]byte
	spec     loadSpec
	start    time.Time
}

var fallbackMark = []byte(`"source":"fallback"`)

// connection sends requests on one keep-alive connection, reconnecting after a
// failure. Paced, connection k sends requests k, k+conns, k+2·conns, … each at its
// due time; a request that goes out late because this connection was still
// waiting for an answer is timed from when it was due (no coordinated omission),
// while one that goes out late because the generator's timer woke late is timed
// from when it went out.
//
// With several targets (paced only), a request goes to the one whose turn it is
// when it is due, on a connection of its own to each.
func (g *generator) connection(ctx context.Context, k int) []loadResult {
	n := len(g.hosts)
	res, conns := make([]loadResult, n), make([]*httpConn, n)
	for t := range n {
		res[t].Latencies = make([]time.Duration, 0, 4096)
		res[t].Sent = make([]int64, 0, 4096)
		conns[t] = &httpConn{host: g.hosts[t], body: make([]byte, 0, 64<<10)}
		defer conns[t].close()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := k; ctx.Err() == nil; i += g.spec.Conns {
		from, t := time.Now(), 0
		if g.spec.Rate > 0 {
			at := time.Duration(float64(i) / g.spec.Rate * float64(time.Second))
			if n > 1 {
				t = int(at/max(g.spec.Slice, 10*time.Millisecond)) % n
			}
			due := g.start.Add(at)
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return countRequests(res)
				}
				from = time.Now()
			} else {
				from = due
			}
		}
		conns[t].exchange(g.requests[t], from, &res[t])
	}
	return countRequests(res)
}

func countRequests(res []loadResult) []loadResult {
	for t := range res {
		res[t].Requests = len(res[t].Latencies)
	}
	return res
}

// httpConn is one keep-alive connection to a server, dialled when first used and
// again after a failure.
type httpConn struct {
	host string
	conn net.Conn
	r    *bufio.Reader
	body []byte
}

// exchange sends request and reads the answer, recording into res the latency
// from from and the outcome.
func (c *httpConn) exchange(request []byte, from time.Time, res *loadResult) {
	record := func() {
		res.Latencies = append(res.Latencies, time.Since(from))
		res.Sent = append(res.Sent, from.UnixNano())
	}
	fail := func(err error) {
		res.Failed++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
		c.close()
	}
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.host, 2*time.Second)
		if err != nil {
			fail(err)
			record()
			time.Sleep(10 * time.Millisecond)
			return
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 64<<10)
	}
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(request); err != nil {
		fail(err)
		record()
		return
	}
	status, b, err := readResponse(c.r, c.body[:0])
	c.body = b[:0]
	record()
	switch {
	case err != nil:
		fail(err)
	case status/100 != 2:
		fail(fmt.Errorf("status %d: %s", status, truncateBytes(b, 200)))
	case bytes.Contains(b, fallbackMark):
		res.Fallbacks++
	}
}

func (c *httpConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// readResponse reads one HTTP/1.1 response: its status and body (Content-Length
// or chunked), appended to body.
func readResponse(r *bufio.Reader, body []byte) (int, []byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, body, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, body, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, body, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return status, body, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, body, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	if !chunked {
		if length < 0 {
			return status, body, errors.New("response without Content-Length")
		}
		body, err := readN(r, body, length)
		return status, body, err
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return status, body, err
		}
		size, err := strconv.ParseInt(string(bytes.TrimRight(line, "\r\n")), 16, 64)
		if err != nil {
			return status, body, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			_, err := r.Discard(2) // the empty trailer
			return status, body, err
		}
		if body, err = readN(r, body, int(size)); err != nil {
			return status, body, err
		}
		if _, err := r.Discard(2); err != nil {
			return status, body, err
		}
	}
}

func readN(r *bufio.Reader, body []byte, n int) ([]byte, error) {
	at := len(body)
	body = append(body, make([]byte, n)...)
	_, err := io.ReadFull(r, body[at:])
	return body, err
}

// selfCPU is the CPU time this process (the servers) has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStat reads the machine's CPU time so far from /proc/stat, in clock ticks:
// user, nice, system, idle, iowait, irq, softirq, steal (zeros where there is
// no /proc/stat).
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
