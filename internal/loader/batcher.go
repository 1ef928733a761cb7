package loader

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoSession means the slot had no session when a batch ran.
var ErrNoSession = errors.New("no session loaded")

// BatchResult is one request's share of a batch run.
type BatchResult struct {
	Out     []float32
	Version int
	Err     error
	// Rows is how many rows the run that answered held, this request's included.
	Rows int
}

// Batcher gathers concurrent small requests into single session runs, one batch
// per slot at a time.
//
// A single-row run costs ONNX Runtime nearly as much as a 16-row one, so under
// load it pays to gather the requests that are already in the process rather
// than run each alone. Submit joins the batch that is open for its slot, or
// opens one. The request that opens a batch first yields the CPU once
// (runtime.Gosched): the goroutines that are runnable then are, under load,
// requests the runtime has already read from the network, and they join before
// it goes on. With nothing runnable the yield returns at once, so an idle scorer
// adds no wait. Requests may also announce themselves with Expect as soon as
// their body is read; after its yield a batch waits for the announced ones,
// until it is full, none is still on its way, or MaxWait has passed since it
// opened.
//
// The request that opened a batch runs it on its own goroutine (no hand-off to a
// worker); the others wait for the result.
type Batcher struct {
	// MaxRows bounds the rows of one run.
	MaxRows int
	// MaxWait bounds how long a batch waits for announced requests.
	MaxWait time.Duration

	incoming atomic.Int64
	mu       sync.Mutex
	open     map[*Slot]*batch

	runs, rows atomic.Int64
}

// NewBatcher returns a batcher of runs of at most maxRows rows that wait at most
// maxWait for announced requests.
func NewBatcher(maxRows int, maxWait time.Duration) *Batcher {
	return &Batcher{MaxRows: max(1, maxRows), MaxWait: maxWait, open: map[*Slot]*batch{}}
}

type batch struct {
	slot *Slot
	flat []float32
	rows int
	// deadline is the latest of its requests' deadlines: the run may take that
	// long, and each request gives up at its own.
	deadline time.Time
	ready    chan struct{} // closed when the batch stops taking rows
	done     chan struct{} // closed when res is set
	res      BatchResult
	out      []float32
	m        int // outputs per row
	// yielding: the opener has let the goroutines already runnable go first, so
	// joiners leave the batch open for it to close.
	yielding bool
}

// flatPool keeps the input buffers of batches; a batch's rows are copied in as
// they join and are no longer needed once its run returns.
var flatPool = sync.Pool{New: func() any { b := make([]float32, 0, 16*64); return &b }}

// Arrival is a request announced with Expect. It must end in exactly one Submit
// or Abandon; Abandon after Submit does nothing, so `defer a.Abandon()` is safe.
type Arrival struct {
	b *Batcher
}

// Expect announces a request that is being decoded and may Submit soon.
func (b *Batcher) Expect() *Arrival {
	b.incoming.Add(1)
	return &Arrival{b: b}
}

// Abandon withdraws the announcement of a request that will not Submit (bad
// input, a large request, a fallback answer), so no batch waits for it.
func (a *Arrival) Abandon() {
	if a == nil || a.b == nil {
		return
	}
	b := a.b
	a.b = nil
	b.mu.Lock()
	if b.incoming.Add(-1) <= 0 {
		for _, bt := range b.open {
			b.closeLocked(bt)
		}
	}
	b.mu.Unlock()
}

// closeLocked stops bt taking rows and lets its opener run it.
func (b *Batcher) closeLocked(bt *batch) {
	if b.open[bt.slot] == bt {
		delete(b.open, bt.slot)
		close(bt.ready)
	}
}

// Pending reports the rows waiting in open batches.
func (b *Batcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, bt := range b.open {
		n += bt.rows
	}
	return n
}

// Stats reports the session runs made and the rows they held.
func (b *Batcher) Stats() (runs, rows int64) { return b.runs.Load(), b.rows.Load() }

// Submit scores rows laid out flat on slot's session, together with whatever
// other requests are in the same batch, within budget. a is the request's
// announcement (nil if it made none). It reports false when the budget ran out
// before the result came.
func (b *Batcher) Submit(a *Arrival, slot *Slot, flat []float32, rows int, budget time.Duration) (BatchResult, bool) {
	start := time.Now()
	b.mu.Lock()
	// Arrive under the lock, so that whoever brings the count to zero finds the
	// batch it completes still open.
	if a != nil && a.b == b {
		a.b = nil
		b.incoming.Add(-1)
	}
	nobodyComing := b.incoming.Load() <= 0
	if cur := b.open[slot]; cur != nil {
		if cur.rows+rows <= b.MaxRows {
			at := cur.rows
			cur.flat = append(cur.flat, flat...)
			cur.rows += rows
			if d := start.Add(budget); d.After(cur.deadline) {
				cur.deadline = d
			}
			if cur.rows >= b.MaxRows || nobodyComing && !cur.yielding {
				b.closeLocked(cur)
			}
			b.mu.Unlock()
			return cur.share(at, rows, budget-time.Since(start))
		}
		// Full for this request: let it go, and open a fresh one below.
		b.closeLocked(cur)
	}
	if rows >= b.MaxRows {
		b.mu.Unlock()
		res, ok := b.run(slot, flat, rows, budget)
		return res, ok
	}
	bt := &batch{slot: slot, rows: rows, deadline: start.Add(budget), ready: make(chan struct{}), done: make(chan struct{}), yielding: true}
	buf := flatPool.Get().(*[]float32)
	bt.flat = append((*buf)[:0], flat...)
	b.open[slot] = bt
	b.mu.Unlock()
	// Let the goroutines that are already runnable go first: under load they are
	// requests the runtime has read from the network, and they join this batch
	// instead of each running alone. With nothing runnable this returns at once.
	runtime.Gosched()
	b.mu.Lock()
	bt.yielding = false
	if b.incoming.Load() <= 0 {
		b.closeLocked(bt)
	}
	b.mu.Unlock()

	select {
	case <-bt.ready:
	default:
		t := getTimer(b.MaxWait)
		select {
		case <-bt.ready:
		case <-t.C:
			b.mu.Lock()
			b.closeLocked(bt)
			b.mu.Unlock()
		}
		putTimer(t)
	}
	// bt is closed: nobody appends to it any more. It runs until the latest
	// deadline of its requests, so a request with a short budget never cuts the
	// others short; its opener still answers "over budget" for itself.
	bt.res, _ = b.run(slot, bt.flat, bt.rows, time.Until(bt.deadline))
	*buf, bt.flat = bt.flat[:0], nil
	flatPool.Put(buf)
	if bt.res.Err == nil {
		bt.m = len(bt.res.Out) / bt.rows
	}
	bt.out = bt.res.Out
	close(bt.done)
	if time.Since(start) > budget {
		return BatchResult{}, false
	}
	return bt.slice(0, rows), !errors.Is(bt.res.Err, ErrBudget)
}

// run scores rows on slot's current session, within budget.
func (b *Batcher) run(slot *Slot, flat []float32, rows int, budget time.Duration) (BatchResult, bool) {
	b.runs.Add(1)
	b.rows.Add(int64(rows))
	l := slot.Acquire()
	if l == nil {
		return BatchResult{Err: ErrNoSession, Rows: rows}, true
	}
	defer l.Release()
	if budget <= 0 {
		return BatchResult{Version: l.Version, Err: ErrBudget, Rows: rows}, false
	}
	out, err := l.RunBudget(flat, rows, budget)
	return BatchResult{Out: out, Version: l.Version, Err: err, Rows: rows}, !errors.Is(err, ErrBudget)
}

// share waits, within budget, for the batch's result and returns the rows
// starting at row at.
func (bt *batch) share(at, rows int, budget time.Duration) (BatchResult, bool) {
	if budget <= 0 {
		return BatchResult{}, false
	}
	t := getTimer(budget)
	defer putTimer(t)
	select {
	case <-bt.done:
	case <-t.C:
		return BatchResult{}, false
	}
	return bt.slice(at, rows), !errors.Is(bt.res.Err, ErrBudget)
}

// timerPool keeps stopped timers: every request that waits in a batch needs one,
// and a new one is an allocation the collector then has to sweep. (Since Go 1.23
// a stopped or reset timer never delivers a stale tick, so reuse is safe.)
var timerPool sync.Pool

// getTimer returns a timer that fires after d.
func getTimer(d time.Duration) *time.Timer {
	if t, _ := timerPool.Get().(*time.Timer); t != nil {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and keeps it for getTimer.
func putTimer(t *time.Timer) {
	t.Stop()
	timerPool.Put(t)
}

func (bt *batch) slice(at, rows int) BatchResult {
	r := BatchResult{Version: bt.res.Version, Err: bt.res.Err, Rows: bt.rows}
	if r.Err != nil {
		return r
	}
	lo, hi := at*bt.m, (at+rows)*bt.m
	if bt.m == 0 || hi > len(bt.out) {
		r.Err = fmt.Errorf("%w: batch output too short", ErrRun)
		return r
	}
	r.Out = bt.out[lo:hi:hi]
	return r
}
