package loader

import (
	"errors"
	"fmt"
)

// ErrNoSession means the slot had no session when a batch ran.
var ErrNoSession = errors.New("no session loaded")

// BatchResult is one request's share of a batch run.
type BatchResult struct {
	Out     []float32
	Version int
	Err     error
}

type batchItem struct {
	flat []float32
	rows int
	done chan BatchResult
}

// Batcher gathers concurrent small requests for one slot into a single session
// run. A worker takes the first request waiting and whatever else is already
// queued, up to MaxRows, and runs them together: it never waits for more, so an
// idle scorer adds no latency, and under load batches form while the previous
// run is busy.
type Batcher struct {
	Slot    *Slot
	MaxRows int
	queue   chan batchItem
	stop    chan struct{}
}

// NewBatcher starts workers gathering batches of at most maxRows rows for slot.
func NewBatcher(slot *Slot, maxRows, workers int) *Batcher {
	b := &Batcher{Slot: slot, MaxRows: maxRows, queue: make(chan batchItem, 4096), stop: make(chan struct{})}
	for i := 0; i < max(1, workers); i++ {
		go b.work()
	}
	return b
}

// Close stops the workers; requests still queued get ErrNoSession.
func (b *Batcher) Close() { close(b.stop) }

// Submit queues rows and returns where the result will arrive (buffered: the
// worker never blocks on a caller that gave up).
func (b *Batcher) Submit(flat []float32, rows int) <-chan BatchResult {
	done := make(chan BatchResult, 1)
	select {
	case b.queue <- batchItem{flat, rows, done}:
	case <-b.stop:
		done <- BatchResult{Err: ErrNoSession}
	}
	return done
}

func (b *Batcher) work() {
	var items []batchItem
	var flat []float32
	for {
		var first batchItem
		select {
		case first = <-b.queue:
		case <-b.stop:
			return
		}
		items = append(items[:0], first)
		rows := first.rows
	drain:
		for rows < b.MaxRows {
			select {
			case it := <-b.queue:
				items = append(items, it)
				rows += it.rows
			default:
				break drain
			}
		}
		l := b.Slot.Acquire()
		if l == nil {
			for _, it := range items {
				it.done <- BatchResult{Err: ErrNoSession}
			}
			continue
		}
		if len(items) == 1 {
			out, err := l.Run(first.flat, first.rows)
			first.done <- BatchResult{Out: out, Version: l.Version, Err: err}
			l.Release()
			continue
		}
		flat = flat[:0]
		for _, it := range items {
			flat = append(flat, it.flat...)
		}
		out, err := l.Run(flat, rows)
		m := l.Signature().Outputs()
		version := l.Version
		l.Release()
		at := 0
		for _, it := range items {
			r := BatchResult{Version: version, Err: err}
			if err == nil {
				if len(out) < (at+it.rows)*m {
					r.Err = fmt.Errorf("%w: batch output too short", ErrRun)
				} else {
					r.Out = out[at*m : (at+it.rows)*m : (at+it.rows)*m]
				}
			}
			at += it.rows
			it.done <- r
		}
	}
}
