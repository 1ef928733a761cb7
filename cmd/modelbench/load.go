package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The load generator runs in the bench's own process, and every server it
// loads runs in a process of its own, so the CPU time each server's process
// spends is its own. The generator speaks HTTP/1.1 over plain keep-alive
// connections with a request prebuilt once, so it costs a few microseconds a
// request, the way wrk does, rather than the tens net/http's client takes.

// loadSpec is one load run.
type loadSpec struct {
	URL      string
	Body     []byte
	Headers  map[string]string
	Conns    int
	Duration time.Duration
	// Rate, when above 0, paces requests at this many a second (open loop);
	// 0 runs every connection back to back (closed loop, maximum load).
	Rate float64
}

// loadResult is what one load run saw.
type loadResult struct {
	Requests  int
	Failed    int // transport errors and non-2xx
	Fallbacks int
	// FallbackReasons counts the fallback answers by their reason.
	FallbackReasons map[string]int
	Elapsed         time.Duration
	Latencies       []time.Duration
	// Sent holds, for each latency, when its request was due (Unix nanoseconds).
	Sent []int64
	// FirstError is the first failure's description, for the log.
	FirstError string
}

func (r loadResult) rps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.Latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// merge adds up runs of the same kind (rounds).
func merge(rs ...loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.Requests += r.Requests
		m.Failed += r.Failed
		m.Fallbacks += r.Fallbacks
		for k, n := range r.FallbackReasons {
			if m.FallbackReasons == nil {
				m.FallbackReasons = map[string]int{}
			}
			m.FallbackReasons[k] += n
		}
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
// nanoseconds, start and end) and the rest.
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

// load runs spec until its duration ends or ctx does, and returns once every
// answer due has arrived: a window measured around it holds all the server
// spent on it.
func load(ctx context.Context, spec loadSpec) (loadResult, error) {
	req, err := request(spec)
	if err != nil {
		return loadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Duration)
	defer cancel()
	g := &generator{host: req.host, request: req.bytes, spec: spec, start: time.Now()}
	results := make([]loadResult, spec.Conns)
	var wg sync.WaitGroup
	for k := range spec.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = g.connection(ctx, k)
		}()
	}
	wg.Wait()
	out := merge(results...)
	out.Elapsed = time.Since(g.start)
	return out, nil
}

type prebuilt struct {
	host  string
	bytes []byte
}

// request is the HTTP/1.1 request spec sends, prebuilt.
func request(spec loadSpec) (prebuilt, error) {
	u, err := url.Parse(spec.URL)
	if err != nil {
		return prebuilt{}, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(spec.Body))
	for k, v := range spec.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.Write(spec.Body)
	return prebuilt{host: u.Host, bytes: b.Bytes()}, nil
}

type generator struct {
	host    string
	request []byte
	spec    loadSpec
	start   time.Time
}

var (
	fallbackMark = []byte(`"source":"fallback"`)
	reasonMark   = []byte(`"reason":"`)
)

// fallbackReason is the reason a fallback answer gives ("unknown" if none).
func fallbackReason(answer []byte) string {
	i := bytes.Index(answer, reasonMark)
	if i < 0 {
		return "unknown"
	}
	rest := answer[i+len(reasonMark):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return "unknown"
	}
	return string(rest[:j])
}

// connection sends requests on one keep-alive connection, reconnecting after a
// failure. Paced, connection k sends requests k, k+conns, k+2·conns, … each at
// its due time; a request that goes out late because this connection was still
// waiting for an answer is timed from when it was due (no coordinated
// omission), one that goes out late because the timer woke late from when it
// went out.
func (g *generator) connection(ctx context.Context, k int) loadResult {
	res := loadResult{Latencies: make([]time.Duration, 0, 4096), Sent: make([]int64, 0, 4096)}
	conn := &httpConn{host: g.host, body: make([]byte, 0, 64<<10)}
	defer conn.close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
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
		conn.exchange(g.request, from, &res)
	}
	res.Requests = len(res.Latencies)
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
		if res.FallbackReasons == nil {
			res.FallbackReasons = map[string]int{}
		}
		res.FallbackReasons[fallbackReason(b)]++
	}
}

func (c *httpConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
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

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
