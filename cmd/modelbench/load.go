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

// load runs spec in a child process and returns what it saw. Cancelling ctx ends
// the run early (the child stops when its stdin closes).
func load(ctx context.Context, spec loadSpec) (loadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return loadResult{}, err
	}
	before, statBefore := selfCPU(), procStat()
	cmd := exec.Command(exe, "-load-child")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return loadResult{}, err
	}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return loadResult{}, err
	}
	spec.CPUs = generatorCPUs
	if err := json.NewEncoder(stdin).Encode(spec); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return loadResult{}, err
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
		fmt.Fprintf(os.Stderr, "load %s: generator CPU user %s sys %s; servers' CPU %s\n", spec.URL, cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime(), selfCPU()-before)
		st := procStat()
		for i := range st {
			st[i] -= statBefore[i]
		}
		fmt.Fprintf(os.Stderr, "  machine jiffies user %d nice %d system %d idle %d iowait %d irq %d softirq %d steal %d\n", st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7])
	}
	if err != nil {
		return loadResult{}, fmt.Errorf("load generator: %w", err)
	}
	var res loadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return loadResult{}, fmt.Errorf("load generator output: %w", err)
	}
	return res, nil
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

// paced sends requests at rate per second, open loop, for d or until ctx ends, so
// latency is measured at a chosen load rather than at saturation.
func paced(ctx context.Context, url string, body []byte, rate float64, d time.Duration) loadResult {
	return mustLoad(ctx, loadSpec{URL: url, Body: body, Conns: pacedConns(rate), Duration: d, Rate: rate})
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
	res, err := generate(ctx, spec)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// generate runs spec's connections and gathers what they saw.
func generate(ctx context.Context, spec loadSpec) (loadResult, error) {
	u, err := url.Parse(spec.URL)
	if err != nil {
		return loadResult{}, err
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(spec.Body))
	for k, v := range spec.Headers {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	req.Write(spec.Body)
	c := &generator{host: u.Host, request: req.Bytes(), spec: spec, start: time.Now()}
	var wg sync.WaitGroup
	results := make([]loadResult, spec.Conns)
	for k := range spec.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = c.connection(ctx, k)
		}()
	}
	wg.Wait()
	res := merge(results...)
	res.Elapsed = time.Since(c.start)
	return res, nil
}

type generator struct {
	host    string
	request []byte
	spec    loadSpec
	start   time.Time
}

var fallbackMark = []byte(`"source":"fallback"`)

// connection sends requests on one keep-alive connection, reconnecting after a
// failure. Paced, connection k sends requests k, k+conns, k+2·conns, … each at its
// due time; a request that goes out late because this connection was still
// waiting for an answer is timed from when it was due (no coordinated omission),
// while one that goes out late because the generator's timer woke late is timed
// from when it went out.
func (g *generator) connection(ctx context.Context, k int) loadResult {
	var res loadResult
	res.Latencies = make([]time.Duration, 0, 4096)
	res.Sent = make([]int64, 0, 4096)
	record := func(from time.Time) {
		res.Latencies = append(res.Latencies, time.Since(from))
		res.Sent = append(res.Sent, from.UnixNano())
	}
	var conn net.Conn
	var r *bufio.Reader
	body := make([]byte, 0, 64<<10)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	fail := func(err error) {
		res.Failed++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i := k; ctx.Err() == nil; i += g.spec.Conns {
		from := time.Now()
		if g.spec.Rate > 0 {
			due := g.start.Add(time.Duration(float64(i) / g.spec.Rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					res.Requests = len(res.Latencies)
					return res
				}
				from = time.Now()
			} else {
				from = due
			}
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", g.host, 2*time.Second)
			if err != nil {
				fail(err)
				record(from)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			conn, r = c, bufio.NewReaderSize(c, 64<<10)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(g.request); err != nil {
			fail(err)
			record(from)
			continue
		}
		status, b, err := readResponse(r, body[:0])
		body = b[:0]
		record(from)
		switch {
		case err != nil:
			fail(err)
		case status/100 != 2:
			fail(fmt.Errorf("status %d: %s", status, truncateBytes(b, 200)))
		case bytes.Contains(b, fallbackMark):
			res.Fallbacks++
		}
	}
	res.Requests = len(res.Latencies)
	return res
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
