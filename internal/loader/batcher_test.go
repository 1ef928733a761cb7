package loader_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/testutil"
)

// forever is a MaxWait no test may reach: a batch that waits for it hangs the
// test, so a passing test shows the batch ran for the reason it names.
const forever = time.Hour

func batchSlot(t *testing.T) (*loader.Slot, *loader.Loaded) {
	t.Helper()
	slot := &loader.Slot{}
	l := mustLoaded(t, 7, 3)
	slot.Swap(l)
	t.Cleanup(slot.Close)
	return slot, l
}

// within fails the test if f does not return in 20 s (instead of hanging).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never returned", what)
	}
}

func TestBatcherRunsALoneRequestAtOnce(t *testing.T) {
	slot, l := batchSlot(t)
	b := loader.NewBatcher(64, forever)
	row := testutil.Row(0.3)
	want, err := l.Run(row, 1)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "a lone request", func() {
		res, ok := b.Submit(b.Expect(), slot, row, 1, 10*time.Second)
		if !ok || res.Err != nil || res.Version != 3 || len(res.Out) != 1 || res.Out[0] != want[0] {
			t.Errorf("lone request: %+v ok=%v, want %v from v3", res, ok, want)
		}
	})
	if runs, rows := b.Stats(); runs != 1 || rows != 1 {
		t.Fatalf("stats: %d runs of %d rows, want 1 of 1", runs, rows)
	}
}

// submitAll announces n one-row requests, then submits them all at once (row i
// is testutil.Row(i/10)), and checks every answer against a run of its row
// alone on l, from a run of at most maxRun rows.
func submitAll(t *testing.T, b *loader.Batcher, slot *loader.Slot, l *loader.Loaded, n, maxRun int) {
	t.Helper()
	arrivals := make([]*loader.Arrival, n)
	for i := range arrivals {
		arrivals[i] = b.Expect()
	}
	var wg sync.WaitGroup
	results := make([]loader.BatchResult, n)
	within(t, "the batches", func() {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], _ = b.Submit(arrivals[i], slot, testutil.Row(float32(i)/10), 1, 10*time.Second)
			}()
		}
		wg.Wait()
	})
	for i, r := range results {
		want, _ := l.Run(testutil.Row(float32(i)/10), 1)
		if r.Err != nil || len(r.Out) != 1 || r.Out[0] != want[0] || r.Rows > maxRun {
			t.Fatalf("request %d got %+v, want %v from a run of at most %d rows", i, r, want, maxRun)
		}
	}
}

func TestBatcherGathersAnnouncedRequestsIntoOneRun(t *testing.T) {
	slot, l := batchSlot(t)
	b := loader.NewBatcher(64, forever)
	const n = 8
	submitAll(t, b, slot, l, n, n)
	if runs, rows := b.Stats(); runs != 1 || rows != n {
		t.Fatalf("stats: %d runs of %d rows, want 1 run of %d", runs, rows, n)
	}
}

func TestBatcherRunsWhenTheLastAnnouncedRequestGivesUp(t *testing.T) {
	slot, _ := batchSlot(t)
	b := loader.NewBatcher(64, forever)
	first, second := b.Expect(), b.Expect()
	done := make(chan loader.BatchResult)
	go func() {
		r, _ := b.Submit(first, slot, testutil.Row(0.1), 1, 10*time.Second)
		done <- r
	}()
	// The first request opens a batch and waits for the second, which turns
	// out to be bad input: abandoning it must let the batch run.
	within(t, "the batch opening", func() {
		for b.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
	})
	second.Abandon()
	second.Abandon() // twice is harmless
	select {
	case r := <-done:
		if r.Err != nil || len(r.Out) != 1 {
			t.Fatalf("got %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the batch never ran after the other request gave up")
	}
}

func TestBatcherStopsWaitingAfterMaxWait(t *testing.T) {
	slot, _ := batchSlot(t)
	b := loader.NewBatcher(64, 20*time.Millisecond)
	late := b.Expect() // announced, never submits in time
	defer late.Abandon()
	within(t, "a batch waiting for a request that never comes", func() {
		r, ok := b.Submit(b.Expect(), slot, testutil.Row(0.2), 1, 10*time.Second)
		if !ok || r.Err != nil || len(r.Out) != 1 {
			t.Errorf("got %+v ok=%v", r, ok)
		}
	})
}

func TestBatcherSplitsAtMaxRows(t *testing.T) {
	slot, l := batchSlot(t)
	b := loader.NewBatcher(4, forever)
	const n = 10
	submitAll(t, b, slot, l, n, 4)
	if runs, rows := b.Stats(); runs < 3 || rows != n {
		t.Fatalf("stats: %d runs of %d rows, want at least 3 runs of %d rows in all", runs, rows, n)
	}
}

func TestBatcherWithoutSessionSaysSo(t *testing.T) {
	b := loader.NewBatcher(64, forever)
	r, ok := b.Submit(b.Expect(), &loader.Slot{}, testutil.Row(0.2), 1, time.Second)
	if !ok || r.Err == nil {
		t.Fatalf("empty slot: %+v ok=%v, want ErrNoSession", r, ok)
	}
}

func TestBatcherShortBudgetDoesNotCutOthersShort(t *testing.T) {
	slot, l := batchSlot(t)
	b := loader.NewBatcher(64, forever)
	opener, other := b.Expect(), b.Expect()
	type result struct {
		r  loader.BatchResult
		ok bool
	}
	first := make(chan result, 1)
	go func() {
		// A budget that is gone before the batch can run.
		r, ok := b.Submit(opener, slot, testutil.Row(0.1), 1, time.Microsecond)
		first <- result{r, ok}
	}()
	within(t, "the batch opening", func() {
		for b.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
	})
	var second result
	within(t, "the second request", func() {
		second.r, second.ok = b.Submit(other, slot, testutil.Row(0.2), 1, 10*time.Second)
	})
	want, _ := l.Run(testutil.Row(0.2), 1)
	if !second.ok || second.r.Err != nil || len(second.r.Out) != 1 || second.r.Out[0] != want[0] {
		t.Fatalf("the request with 10 s got %+v ok=%v: cut short by its neighbour's 1 µs budget", second.r, second.ok)
	}
	if f := <-first; f.ok {
		t.Fatalf("the request with 1 µs says it was answered in time: %+v", f.r)
	}
}

// Requests that announced nothing still share a run when they are runnable
// together: the request that opens a batch yields once before closing it. With
// one P, goroutines started together are all in its run queue when the first of
// them opens the batch; without the yield each would run alone.
func TestBatcherGathersRunnableRequests(t *testing.T) {
	slot, l := batchSlot(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	b := loader.NewBatcher(64, forever)
	const n = 8
	results := make([]loader.BatchResult, n)
	within(t, "runnable requests", func() {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], _ = b.Submit(nil, slot, testutil.Row(float32(i)/10), 1, 10*time.Second)
			}()
		}
		wg.Wait()
	})
	for i, r := range results {
		want, _ := l.Run(testutil.Row(float32(i)/10), 1)
		if r.Err != nil || len(r.Out) != 1 || r.Out[0] != want[0] {
			t.Fatalf("request %d got %+v, want %v", i, r, want)
		}
	}
	// The run queue is normally drained before the yielding opener runs again;
	// the scheduler's periodic look at the global queue may cut that short once.
	if runs, rows := b.Stats(); runs > 2 || rows != n {
		t.Fatalf("%d runs of %d rows in all, want %d rows in at most 2 runs", runs, rows, n)
	}
}
