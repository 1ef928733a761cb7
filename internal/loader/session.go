package loader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelops/modelops/internal/artifact"
)

// Errors a caller can branch on.
var (
	ErrInvalidModel = errors.New("invalid model")
	ErrGolden       = errors.New("golden input mismatch")
	ErrRun          = errors.New("session run failed")
)

// Options tune the sessions the loader builds.
type Options struct {
	// IntraOpThreads is ONNX Runtime's intra-op thread count per session.
	IntraOpThreads int
}

// DefaultOptions suit small models served to many concurrent requests: one thread
// per session, so concurrency comes from requests rather than from inside a run.
func DefaultOptions() Options { return Options{IntraOpThreads: 1} }

// Session is one ONNX Runtime session with the signature it was built for. It is
// safe for concurrent Run calls.
type Session struct {
	sess *ort.DynamicAdvancedSession
	sig  artifact.Signature
	// pool keeps input and output tensors for runs of up to pooledRows rows, by row
	// count: creating and releasing two tensors costs about as much as running a
	// one-row request through the model.
	pool [pooledRows + 1]chan *ioTensors
}

// pooledRows is the largest run whose tensors are kept for the next run.
const pooledRows = 64

// ioTensors are an input and an output tensor of one shape, over Go memory.
type ioTensors struct {
	in, out *ort.Tensor[float32]
}

func (t *ioTensors) destroy() {
	t.in.Destroy()
	t.out.Destroy()
}

// Open builds a session from an ONNX file and inspects its signature, which
// must be servable (artifact.Signature.Servable).
func Open(path string, opts Options) (*Session, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	ins, outs, err := inspect(path)
	if err != nil {
		return nil, fmt.Errorf("%w: ONNX Runtime cannot load it: %v", ErrInvalidModel, err)
	}
	if len(ins) < 1 || len(outs) < 1 {
		return nil, fmt.Errorf("%w: %w: graph has %d inputs and %d outputs, want at least 1 of each", ErrInvalidModel, artifact.ErrSignature, len(ins), len(outs))
	}
	var inT, outT []artifact.Tensor
	var inNames, outNames []string
	for _, i := range ins {
		inT, inNames = append(inT, tensorOf(i)), append(inNames, i.Name)
	}
	for _, o := range outs {
		outT, outNames = append(outT, tensorOf(o)), append(outNames, o.Name)
	}
	sig := artifact.NewSignature(inT, outT)
	if err := sig.Servable(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer so.Destroy()
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	s, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("%w: ONNX Runtime cannot build a session: %v", ErrInvalidModel, err)
	}
	sess := &Session{sess: s, sig: sig}
	for i := range sess.pool {
		sess.pool[i] = make(chan *ioTensors, 2)
	}
	return sess, nil
}

// inspect asks ONNX Runtime for a graph's inputs and outputs. That takes a
// throwaway session: one thread and no graph optimisation keep it cheap (with
// the defaults it would start a thread pool and optimise a graph that never
// runs).
func inspect(path string) (ins, outs []ort.InputOutputInfo, err error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	for _, set := range []func() error{
		func() error { return so.SetIntraOpNumThreads(1) },
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll) },
	} {
		if err := set(); err != nil {
			return nil, nil, err
		}
	}
	return ort.GetInputOutputInfoWithOptions(path, so)
}

func tensorOf(info ort.InputOutputInfo) artifact.Tensor {
	t := artifact.Tensor{Name: info.Name, Type: info.DataType.String(), Shape: []int64(info.Dimensions)}
	switch info.DataType {
	case ort.TensorElementDataTypeFloat:
		t.Type = "float32"
	case ort.TensorElementDataTypeDouble:
		t.Type = "float64"
	case ort.TensorElementDataTypeInt32:
		t.Type = "int32"
	case ort.TensorElementDataTypeInt64:
		t.Type = "int64"
	case ort.TensorElementDataTypeBool:
		t.Type = "bool"
	}
	if info.OrtValueType != ort.ONNXTypeTensor {
		t.Type = info.OrtValueType.String()
	}
	return t
}

// Signature is the signature ONNX Runtime reports for the graph.
func (s *Session) Signature() artifact.Signature { return s.sig }

// Run scores rows laid out flat (rows × features) and returns rows × outputs values.
func (s *Session) Run(flat []float32, rows int) ([]float32, error) {
	return s.run(flat, rows, nil)
}

func (s *Session) run(flat []float32, rows int, opts *ort.RunOptions) ([]float32, error) {
	if !s.sig.Simple() {
		return nil, fmt.Errorf("%w: rows need a graph of one float32 input [batch,N] and one float32 output [batch,M]; this one has %s", ErrRun, s.sig)
	}
	n, m := s.sig.Features(), s.sig.Outputs()
	if rows < 1 || len(flat) != rows*n {
		return nil, fmt.Errorf("%w: %d values for %d rows of %d features", ErrRun, len(flat), rows, n)
	}
	if rows <= pooledRows {
		t, err := s.tensors(rows)
		if err != nil {
			return nil, err
		}
		copy(t.in.GetData(), flat)
		if err := s.sess.RunWithOptions([]ort.Value{t.in}, []ort.Value{t.out}, opts); err != nil {
			s.putTensors(rows, t)
			return nil, fmt.Errorf("%w: %v", ErrRun, err)
		}
		result := append([]float32(nil), t.out.GetData()...)
		s.putTensors(rows, t)
		return result, nil
	}
	in, err := ort.NewTensor(ort.NewShape(int64(rows), int64(n)), flat)
	if err != nil {
		return nil, fmt.Errorf("%w: input tensor: %v", ErrRun, err)
	}
	defer in.Destroy()
	// The output goes straight into Go memory: no copy, no shape queries.
	result := make([]float32, rows*m)
	out, err := ort.NewTensor(ort.NewShape(int64(rows), int64(m)), result)
	if err != nil {
		return nil, fmt.Errorf("%w: output tensor: %v", ErrRun, err)
	}
	defer out.Destroy()
	if err := s.sess.RunWithOptions([]ort.Value{in}, []ort.Value{out}, opts); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRun, err)
	}
	return result, nil
}

// tensors takes a pair of tensors for rows rows from the pool, or makes one.
func (s *Session) tensors(rows int) (*ioTensors, error) {
	select {
	case t := <-s.pool[rows]:
		return t, nil
	default:
	}
	n, m := s.sig.Features(), s.sig.Outputs()
	in, err := ort.NewTensor(ort.NewShape(int64(rows), int64(n)), make([]float32, rows*n))
	if err != nil {
		return nil, fmt.Errorf("%w: input tensor: %v", ErrRun, err)
	}
	out, err := ort.NewTensor(ort.NewShape(int64(rows), int64(m)), make([]float32, rows*m))
	if err != nil {
		in.Destroy()
		return nil, fmt.Errorf("%w: output tensor: %v", ErrRun, err)
	}
	return &ioTensors{in: in, out: out}, nil
}

// putTensors returns a pair to the pool, or destroys it when the pool is full.
func (s *Session) putTensors(rows int, t *ioTensors) {
	select {
	case s.pool[rows] <- t:
	default:
		t.destroy()
	}
}

// VerifyGolden runs the card's golden inputs and returns an error naming the first
// output that differs from the card by more than artifact.GoldenTolerance.
func (s *Session) VerifyGolden(card *artifact.Card) error { return s.verifyGolden(card, nil) }

func (s *Session) verifyGolden(card *artifact.Card, opts *ort.RunOptions) error {
	if card == nil || len(card.Golden) == 0 {
		return nil
	}
	n, m := s.sig.Features(), s.sig.Outputs()
	flat := make([]float32, 0, len(card.Golden)*n)
	for i, g := range card.Golden {
		if len(g.Input) != n || len(g.Output) != m {
			return fmt.Errorf("%w: golden[%d] has %d inputs and %d outputs, the graph takes %d and yields %d", ErrGolden, i, len(g.Input), len(g.Output), n, m)
		}
		for _, v := range g.Input {
			flat = append(flat, float32(v))
		}
	}
	out, err := s.run(flat, len(card.Golden), opts)
	if err != nil {
		return err
	}
	if row, ok := artifact.ValidOutput(card.Contract(), out, m); !ok {
		return fmt.Errorf("%w: golden[%d] output %v breaks the output contract %q%s", ErrGolden, row, out[row*m:(row+1)*m], card.Contract(), contractHint(card.Contract()))
	}
	for i, g := range card.Golden {
		for j, want := range g.Output {
			got := float64(out[i*m+j])
			if math.IsNaN(got) || math.Abs(got-want) > artifact.GoldenTolerance {
				return fmt.Errorf("%w: golden[%d] output[%d] is %.7g, card says %.7g (tolerance %g)", ErrGolden, i, j, got, want, artifact.GoldenTolerance)
			}
		}
	}
	return nil
}

// contractHint says how a card declares another output contract.
func contractHint(contract string) string {
	if contract != artifact.ContractScore {
		return ""
	}
	return fmt.Sprintf(` (one value in [0,1]); a card declares another with "output": %q or %q`, artifact.ContractRegression, artifact.ContractProbabilities)
}

// WarmUp runs a few batches of zeros so the first real request does not pay for
// ONNX Runtime's lazy initialisation.
func (s *Session) WarmUp() error { return s.warmUp(nil) }

func (s *Session) warmUp(opts *ort.RunOptions) error {
	if !s.sig.Simple() {
		for _, rows := range []int{1, 8, 1} {
			if _, err := s.runTensors(Zeros(s.sig, rows), opts); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
		return nil
	}
	for _, rows := range []int{1, 8, 1} {
		if _, err := s.run(make([]float32, rows*s.sig.Features()), rows, opts); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// Close destroys the session and its pooled tensors. It must not be called while
// a Run is in progress.
func (s *Session) Close() error {
	for _, p := range s.pool {
	drain:
		for {
			select {
			case t := <-p:
				t.destroy()
			default:
				break drain
			}
		}
	}
	return s.sess.Destroy()
}

// Check verifies an open session: its signature against want (when given), the
// card against the signature, and the card's golden inputs.
func (s *Session) Check(model string, want *artifact.Signature, card *artifact.Card) error {
	return s.check(model, want, card, nil)
}

func (s *Session) check(model string, want *artifact.Signature, card *artifact.Card, opts *ort.RunOptions) error {
	sig := s.Signature()
	if want != nil {
		if err := sig.Match(*want); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidModel, err)
		}
	}
	if card != nil {
		if err := card.Check(model, sig); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidModel, err)
		}
	}
	if err := s.verifyGolden(card, opts); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	return nil
}

// Verify refuses a graph with external data (CheckEmbedded), builds a session
// from path, checks it (see Check), warms it up and closes it: all a push
// verifies. It returns the signature ONNX Runtime reports.
func Verify(path, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error) {
	if err := CheckEmbedded(path); err != nil {
		return artifact.Signature{}, err
	}
	s, err := Open(path, DefaultOptions())
	if err != nil {
		return artifact.Signature{}, err
	}
	defer s.Close()
	if err := s.Check(model, want, card); err != nil {
		return s.Signature(), err
	}
	return s.Signature(), s.WarmUp()
}

// loaderNice is the niceness of the loader's thread: against requests at nice 0
// it gets about a tenth of a contended CPU (CFS weights 110 and 1024), so a
// load under full load slows requests little yet still finishes in seconds,
// which an automatic rollback needs. (At 19 it would get 1.5%.)
const loaderNice = 10

// ErrLoadTimeout means a load (verification, golden inputs, warm-up) ran out
// of its deadline; ONNX Runtime was asked to stop the run it was in.
var ErrLoadTimeout = errors.New("load timed out")

// Prepare builds a session from path, checks it (see Check) and warms it up: all
// a scorer does before a swap. With one intra-op thread it runs on an OS thread
// of low CPU priority (loaderNice), so loading a new version under load takes
// mostly CPU that requests leave idle. (ONNX Runtime's intra-op pool threads would
// inherit the priority for the session's life, so with more than one it runs
// at normal priority.)
func Prepare(path, model string, want *artifact.Signature, card *artifact.Card, opts Options) (*Session, error) {
	return PrepareContext(context.Background(), path, model, want, card, opts)
}

// PrepareContext is Prepare under ctx: when ctx is done (its deadline passes,
// a newer deployment supersedes the load, the node shuts down), ONNX Runtime
// is asked to terminate the golden or warm-up run in progress, and the load
// fails with ErrLoadTimeout (past a deadline) or ctx's error. A graph whose
// runs never end cannot wedge the loader.
func PrepareContext(ctx context.Context, path, model string, want *artifact.Signature, card *artifact.Card, opts Options) (*Session, error) {
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("run options: %w", err)
	}
	defer runOpts.Destroy()
	var mu sync.Mutex
	finished := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			runOpts.Terminate()
		}
	})
	defer func() {
		stop()
		mu.Lock()
		finished = true
		mu.Unlock()
	}()
	prepare := func() (*Session, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := Open(path, opts)
		if err != nil {
			return nil, err
		}
		err = s.check(model, want, card, runOpts)
		if err == nil {
			err = s.warmUp(runOpts)
		}
		if err != nil {
			s.Close()
			if ctx.Err() != nil {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return nil, fmt.Errorf("%w: verification and warm-up did not finish in time (ONNX Runtime stopped the run): %v", ErrLoadTimeout, err)
				}
				return nil, fmt.Errorf("load stopped: %w", ctx.Err())
			}
			return nil, err
		}
		return s, nil
	}
	if opts.IntraOpThreads > 1 {
		return prepare()
	}
	var s *Session
	onBackgroundThread(func() { s, err = prepare() })
	return s, err
}

// onBackgroundThread runs f on the loader's own OS thread, which runs at low CPU
// priority (loaderNice), and waits for it. Runs take turns. The thread lives as
// long as the process and runs nothing else: its goroutine stays locked to it,
// and threads the runtime starts meanwhile are cloned from a thread of normal
// priority, not this one. One thread rather than one per load also keeps C
// allocations (ONNX Runtime's) in one malloc arena, so memory freed by one load
// serves the next.
func onBackgroundThread(f func()) {
	background.once.Do(func() {
		background.jobs = make(chan func())
		go func() {
			runtime.LockOSThread()
			lowerThreadPriority() // best effort: at worst loads run at normal priority
			for job := range background.jobs {
				job()
			}
		}()
	})
	done := make(chan struct{})
	background.jobs <- func() {
		defer close(done)
		f()
	}
	<-done
}

var background struct {
	once sync.Once
	jobs chan func()
}

// Verifier adapts Verify to the registry's push check, in this process: for
// tests and tools. The control plane verifies pushes in a child process
// (ServeVerify), under limits.
type Verifier struct{}

// VerifyArtifact implements registry.Verifier.
func (Verifier) VerifyArtifact(_ context.Context, path, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error) {
	return Verify(path, model, want, card)
}

var runOptionsPool = sync.Pool{New: func() any {
	o, err := ort.NewRunOptions()
	if err != nil {
		return nil
	}
	return o
}}

// ErrBudget means a run was stopped because its latency budget ran out.
var ErrBudget = errors.New("latency budget exceeded")

// RunBudget is Run with a latency budget: ONNX Runtime is asked to terminate the
// run when the budget runs out (it stops between operators), and the call returns
// ErrBudget. It runs on the caller's goroutine: no hand-off per request.
func (s *Session) RunBudget(flat []float32, rows int, budget time.Duration) ([]float32, error) {
	opts, _ := runOptionsPool.Get().(*ort.RunOptions)
	if opts == nil {
		return s.Run(flat, rows)
	}
	// The timer may only touch opts while the run is going: it checks under b.mu,
	// and once the run has ended (done) it leaves opts alone, so they can go back
	// to the pool with the flag cleared.
	var b struct {
		mu          sync.Mutex
		done, fired bool
	}
	start := time.Now()
	timer := time.AfterFunc(budget, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.done {
			b.fired = true
			opts.Terminate()
		}
	})
	out, err := s.run(flat, rows, opts)
	b.mu.Lock()
	b.done = true
	fired := b.fired
	b.mu.Unlock()
	timer.Stop()
	if fired {
		opts.UnsetTerminate()
	}
	// A run that ends past its budget is over budget, whether ONNX Runtime
	// stopped it or it finished late.
	if elapsed := time.Since(start); elapsed > budget {
		out, err = nil, fmt.Errorf("%w: %s > %s", ErrBudget, elapsed.Round(time.Microsecond), budget)
	}
	runOptionsPool.Put(opts)
	return out, err
}
