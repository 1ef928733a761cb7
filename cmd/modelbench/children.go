package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/valyala/fasthttp"
	ort "github.com/yalue/onnxruntime_go"
)

// Every contender runs in a process of its own, so that its CPU time in
// /proc/PID/stat is its own: the scorer and the control plane are their real
// binaries; the null-model handlers and the raw onnxruntime_go loop are this
// program re-executed with -child.

// proc is a child process the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	// url is where a server child listens (http://127.0.0.1:PORT).
	url string
	// in and out talk to a raw-loop child.
	in  io.WriteCloser
	out *bufio.Reader
	log *os.File
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// rss is the child's resident set size in bytes and its OS threads.
func (p *proc) rss() (float64, int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0
	}
	var kb float64
	var threads int
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
		}
		if rest, ok := strings.CutPrefix(l, "Threads:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &threads)
		}
	}
	return kb * 1024, threads
}

// stop ends the child with SIGTERM (SIGKILL after 15 s) and waits for it.
func (p *proc) stop() {
	if p.in != nil {
		p.in.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if p.log != nil {
		p.log.Close()
	}
}

// logTail is the end of the child's log, for an error message.
func (p *proc) logTail() string {
	if p.log == nil {
		return ""
	}
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// startProc starts bin with args and env added, its stderr (and stdout, unless
// piped) in a log file under dir.
func startProc(dir, name, bin string, args, env []string, piped bool) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	p := &proc{name: name, cmd: cmd, log: logf}
	if piped {
		if p.in, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		p.out = bufio.NewReader(out)
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return p, nil
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer starts a server child listening on a free loopback port (its
// args hold "ADDR" where the address goes) and waits until path answers 200.
func startServer(dir, name, bin string, args, env []string, path string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ADDR", addr)
	}
	p, err := startProc(dir, name, bin, args, env, false)
	if err != nil {
		return nil, err
	}
	p.url = "http://" + addr
	exited := make(chan struct{})
	go func() {
		p.cmd.Process.Wait()
		close(exited)
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(p.url + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited before it was ready; its log:\n%s", name, p.logTail())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready at %s after 60 s; its log:\n%s", name, path, p.logTail())
		}
	}
}

// runChild is this program as a child: kind names what it runs.
func runChild(kind string, args []string) error {
	switch kind {
	case "null-echo", "null-fasthttp":
		if len(args) != 1 {
			return errors.New("want the listen address")
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if kind == "null-echo" {
			return serveNullEcho(ctx, args[0])
		}
		return serveNullFast(ctx, args[0])
	case "null-grpc":
		return runNullGRPCChild(args)
	case "raw":
		if len(args) != 3 {
			return errors.New("want the library, the model and the batch size")
		}
		var batch int
		if _, err := fmt.Sscan(args[2], &batch); err != nil || batch < 1 {
			return fmt.Errorf("batch %q: want a positive whole number", args[2])
		}
		return rawLoopChild(args[0], args[1], batch)
	}
	return fmt.Errorf("unknown child %q", kind)
}

// nullRequest is the single-row /v1/score request the null-model handlers
// decode: the fields the bench sends.
type nullRequest struct {
	Model    string      `json:"model,omitempty"`
	Features []float64   `json:"features,omitempty"`
	Rows     [][]float64 `json:"rows,omitempty"`
	Key      string      `json:"key,omitempty"`
}

// nullResponse is the constant answer, shaped as the scorer's.
type nullResponse struct {
	Model     string  `json:"model"`
	Score     float32 `json:"score"`
	Source    string  `json:"source"`
	Version   int     `json:"version"`
	Arm       string  `json:"arm"`
	RequestID string  `json:"request_id"`
}

var nullAnswer = nullResponse{Model: "calling-score", Score: 0.5, Source: "model", Version: 1, Arm: "champion", RequestID: "0000000000000000"}

// nullBodyLimit bounds a request body, as the scorer's does.
const nullBodyLimit = 1 << 20

// serveNullEcho serves the null-model handler on echo v4 and net/http: read the
// body, decode it with encoding/json, check the row, answer a constant encoded
// by encoding/json. serveNullFast does exactly the same on fasthttp, so the two
// differ by their HTTP stack alone.
func serveNullEcho(ctx context.Context, addr string) error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.POST("/v1/score", func(c echo.Context) error {
		body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, nullBodyLimit))
		var req nullRequest
		if err != nil || json.Unmarshal(body, &req) != nil || len(req.Features) != 39 {
			return c.JSONBlob(http.StatusBadRequest, []byte(`{"error":"want 39 features"}`))
		}
		b, err := json.Marshal(nullAnswer)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, b)
	})
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return srv.Shutdown(context.Background())
	}
}

// serveNullFast is the same handler on fasthttp.
func serveNullFast(ctx context.Context, addr string) error {
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			switch string(c.Path()) {
			case "/healthz":
				c.SetBodyString("ok")
				return
			case "/v1/score":
			case nullInferPath:
				nullInfer(c)
				return
			default:
				c.SetStatusCode(http.StatusNotFound)
				return
			}
			c.SetContentType("application/json")
			var req nullRequest
			if err := json.Unmarshal(c.PostBody(), &req); err != nil || len(req.Features) != 39 {
				c.SetStatusCode(http.StatusBadRequest)
				c.SetBodyString(`{"error":"want 39 features"}`)
				return
			}
			b, _ := json.Marshal(nullAnswer)
			c.SetBody(b)
		},
		MaxRequestBodySize: nullBodyLimit,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        2 * time.Minute,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return srv.Shutdown()
	}
}

// nullInferPath is where the null fasthttp handler takes a 256-row OIP v2
// binary request.
const nullInferPath = "/v2/models/calling-score/infer"

// nullBinaryAnswer is the constant binary answer to a 256-row request: the
// JSON header the scorer writes, then 256 FP32 scores.
var nullBinaryHeader, nullBinaryAnswer = func() (string, []byte) {
	h := `{"model_name":"calling-score","model_version":"1","parameters":{"arm":"champion","source":"model","request_id":"0000000000000000"},"outputs":[{"name":"output","shape":[256,1],"datatype":"FP32","parameters":{"binary_data_size":1024}}]}`
	b := append([]byte(h), make([]byte, 256*4)...)
	for i := range 256 {
		binary.LittleEndian.PutUint32(b[len(h)+4*i:], math.Float32bits(0.5))
	}
	return strconv.Itoa(len(h)), b
}()

// nullInfer is the floor of a 256-row binary request on fasthttp: read the
// whole body, check its header length fits, answer a constant. No JSON, no
// model: what the HTTP stack alone costs.
func nullInfer(c *fasthttp.RequestCtx) {
	hl, err := strconv.Atoi(string(c.Request.Header.Peek("Inference-Header-Content-Length")))
	if body := c.PostBody(); err != nil || hl <= 0 || hl >= len(body) {
		c.SetStatusCode(http.StatusBadRequest)
		c.SetBodyString(`{"error":"want a binary request"}`)
		return
	}
	c.SetContentType("application/octet-stream")
	c.Response.Header.Set("Inference-Header-Content-Length", nullBinaryHeader)
	c.SetBody(nullBinaryAnswer)
}

// rawLoopChild loads the model into one onnxruntime_go session with
// preallocated input and output tensors of batch rows, one intra-op thread (as
// the scorer's default), prints "ready", then for each duration read from stdin
// runs the session back to back on one locked OS thread for that long and
// prints how many runs it made. It ends when stdin closes.
func rawLoopChild(lib, model string, batch int) error {
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return err
	}
	defer ort.DestroyEnvironment()
	in := make([]float32, batch*39)
	for i := range in {
		in[i] = float32(i%97) / 97
	}
	it, err := ort.NewTensor(ort.NewShape(int64(batch), 39), in)
	if err != nil {
		return err
	}
	defer it.Destroy()
	ot, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(batch), 1))
	if err != nil {
		return err
	}
	defer ot.Destroy()
	so, err := ort.NewSessionOptions()
	if err != nil {
		return err
	}
	so.SetIntraOpNumThreads(1)
	so.SetInterOpNumThreads(1)
	s, err := ort.NewAdvancedSession(model, []string{"input"}, []string{"output"}, []ort.Value{it}, []ort.Value{ot}, so)
	so.Destroy()
	if err != nil {
		return err
	}
	defer s.Destroy()
	if err := s.Run(); err != nil { // warm
		return err
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		d, err := time.ParseDuration(strings.TrimSpace(sc.Text()))
		if err != nil {
			return err
		}
		runs, err := rawWindow(s, d)
		if err != nil {
			return err
		}
		fmt.Println(runs)
	}
	return sc.Err()
}

func rawWindow(s *ort.AdvancedSession, d time.Duration) (int, error) {
	done := make(chan struct{})
	var runs int
	var err error
	go func() {
		defer close(done)
		// One OS thread does every run, as a scorer's request does its own.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for end := time.Now().Add(d); time.Now().Before(end); runs++ {
			if err = s.Run(); err != nil {
				return
			}
		}
	}()
	<-done
	return runs, err
}

// rawLoop is a raw-loop child seen from the bench.
type rawLoop struct {
	*proc
	batch int
}

func startRawLoop(dir, lib, model string, batch int) (*rawLoop, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, err := startProc(dir, fmt.Sprintf("raw-loop-%d", batch), exe, []string{"-child", "raw", lib, model, fmt.Sprint(batch)}, nil, true)
	if err != nil {
		return nil, err
	}
	if line, err := p.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		p.stop()
		return nil, fmt.Errorf("raw loop (batch %d) did not start: %q %v; its log:\n%s", batch, line, err, p.logTail())
	}
	return &rawLoop{proc: p, batch: batch}, nil
}

// window runs the loop for d and returns what the child spent on it.
func (r *rawLoop) window(d time.Duration) (cost, error) {
	m, err := startMeter(r.pid())
	if err != nil {
		return cost{}, err
	}
	if _, err := fmt.Fprintln(r.in, d); err != nil {
		return cost{}, err
	}
	line, err := r.out.ReadString('\n')
	if err != nil {
		return cost{}, fmt.Errorf("raw loop: %w; its log:\n%s", err, r.logTail())
	}
	var runs int
	if _, err := fmt.Sscan(line, &runs); err != nil {
		return cost{}, fmt.Errorf("raw loop printed %q", line)
	}
	return m.stop(runs, runs*r.batch)
}
