package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The scorer serves no /debug/pprof, and a Go profile would not see inside ONNX
// Runtime anyway (it is C++ behind cgo), so the profile is Linux perf sampling
// the scorer process from outside: where its CPU time goes, in every library
// and the kernel alike.

// profile is where one process's CPU time went over a window under load.
type profile struct {
	// symbols is how many distinct symbols were sampled.
	distinct int
	// buckets are shares of the samples by where they fell (library, Go
	// package, kind of runtime work), largest first.
	buckets []share
	// symbols are the largest single symbols outside ONNX Runtime.
	symbols []share
	// cost is what the process spent in the window, and on what.
	cost cost
}

type share struct {
	name string
	frac float64
}

// profileScorer loads sc with spec while perf samples it, and returns where its
// CPU went.
func (b *bench) profileScorer(sc *proc, spec loadSpec) (*profile, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("perf is not installed (apt-get install linux-perf)")
	}
	data := filepath.Join(b.dir, "perf.data")
	rec := exec.Command(perf, "record", "-q", "-F", "997", "-p", strconv.Itoa(sc.pid()), "-o", data, "--", "sleep", fmt.Sprint((spec.Duration + 500*time.Millisecond).Seconds()))
	var stderr bytes.Buffer
	rec.Stderr = &stderr
	if err := rec.Start(); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // perf attaches
	m, err := startMeter(sc.pid())
	if err != nil {
		return nil, err
	}
	res, err := loadAny(context.Background(), spec)
	if err != nil {
		return nil, err
	}
	c, err := m.stop(res.Requests-res.Failed, (res.Requests-res.Failed)*256)
	if err != nil {
		return nil, err
	}
	if err := rec.Wait(); err != nil {
		return nil, fmt.Errorf("perf record: %w: %s", err, stderr.String())
	}
	out, err := exec.Command(perf, "report", "-i", data, "--stdio", "-q", "--no-children", "--sort", "dso,sym", "-t", "\t", "--percent-limit", "0").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	p, err := parsePerfReport(out)
	if err != nil {
		return nil, err
	}
	p.cost = c
	return p, nil
}

// parsePerfReport reads `perf report --sort dso,sym -t '\t'` lines (overhead,
// shared object, symbol) into shares by bucket and by symbol.
func parsePerfReport(out []byte) (*profile, error) {
	byBucket, bySymbol := map[string]float64{}, map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	lines := 0
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		if len(f) < 3 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pc, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		dso, sym := f[1], strings.TrimPrefix(strings.TrimPrefix(f[2], "[.] "), "[k] ")
		bucket := classify(dso, sym)
		byBucket[bucket] += pc / 100
		if bucket != bucketORT {
			bySymbol[sym+" ("+filepath.Base(dso)+")"] += pc / 100
		}
		lines++
	}
	if lines == 0 {
		return nil, fmt.Errorf("perf report: no samples")
	}
	return &profile{distinct: lines, buckets: sorted(byBucket, 0), symbols: sorted(bySymbol, 12)}, nil
}

func sorted(m map[string]float64, n int) []share {
	var s []share
	for k, v := range m {
		s = append(s, share{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].frac > s[j].frac })
	if n > 0 && len(s) > n {
		s = s[:n]
	}
	return s
}

const bucketORT = "ONNX Runtime (libonnxruntime)"

// classify names where a sample fell: a library, the kernel, or for Go code
// its package, with the runtime's collection, allocation, scheduling and cgo
// calls told apart.
func classify(dso, sym string) string {
	base := filepath.Base(dso)
	switch {
	case strings.HasPrefix(base, "libonnxruntime"):
		return bucketORT
	case strings.Contains(dso, "kernel") || strings.HasPrefix(sym, "0xffff"):
		return "kernel (loopback TCP, syscalls, scheduling, page faults)"
	case strings.HasPrefix(base, "libc.") || strings.HasPrefix(base, "libc-") || strings.HasPrefix(base, "libstdc++") || strings.HasPrefix(base, "libm.") || strings.HasPrefix(base, "ld-linux") || strings.HasPrefix(base, "libgcc"):
		return "C and C++ libraries (ONNX Runtime's allocations and copies)"
	case strings.HasPrefix(sym, "runtime."):
		return "Go runtime: " + runtimeKind(strings.TrimPrefix(sym, "runtime."))
	case strings.HasPrefix(sym, "aeshash") || strings.HasPrefix(sym, "memeqbody") || strings.HasPrefix(sym, "indexbytebody") || strings.HasPrefix(sym, "cmpbody"):
		return "Go runtime: other"
	}
	if pkg := goPackage(sym); pkg != "" {
		return "Go: " + pkg
	}
	if base == "[unknown]" || sym == "[unknown]" || strings.HasPrefix(sym, "0x") {
		return "unknown"
	}
	return "C in the binary: " + base + " (cgo glue)"
}

// runtimeKind sorts the Go runtime's functions into what they do.
func runtimeKind(fn string) string {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("gc", "scanobject", "greyobject", "markBits", "(*gcWork)", "(*gcBits)", "findObject", "scanblock", "scanstack", "scanframe", "markroot", "sweep", "(*mspan).sweep", "(*sweepLocked)", "wbBuf", "bulkBarrier", "typePointers", "(*mspan).typePointers", "spanOf", "heapBits", "(*mheap)", "(*pageAlloc)", "(*pallocBits)", "(*scavenger", "pcvalue", "(*unwinder)", "funcspdelta", "step", "findfunc"):
		return "garbage collection"
	case has("mallocgc", "nextFreeFast", "(*mcache)", "(*mcentral)", "newobject", "makeslice", "growslice", "memclrNoHeapPointers", "newarray", "(*mspan).nextFreeIndex", "heapSetType", "deductAssistCredit", "publicationBarrier", "rawstring", "concatstring", "slicebytetostring", "stringtoslicebyte", "rawbyteslice"):
		return "allocation"
	case has("cgocall", "asmcgocall", "cgocallback", "entersyscall", "exitsyscall", "reentersyscall", "(*LockOSThread", "lockOSThread", "unlockOSThread"):
		return "cgo and system call transitions"
	case has("schedule", "findRunnable", "netpoll", "futex", "park_m", "ready", "goready", "gopark", "wakep", "startm", "stopm", "notesleep", "notewakeup", "runqget", "runqput", "runqsteal", "stealWork", "mcall", "gogo", "goexit", "execute", "usleep", "osyield", "(*timers)", "checkTimers", "nanotime", "procyield", "lock2", "unlock2", "semacquire", "semrelease", "casgstatus", "resetspinning", "globrunq", "injectglist", "newproc", "systemstack", "morestack", "newstack", "copystack", "sysmon", "retake", "handoffp", "acquirep", "releasep", "mPark", "(*waitq)", "selectgo", "chansend", "chanrecv", "(*hchan)", "sellock", "selunlock", "send", "recv"):
		return "scheduler, netpoller, channels"
	case has("memmove"):
		return "memory copies"
	case has("mapaccess", "mapassign", "mapdelete", "mapiter", "(*maps", "mapclear"):
		return "maps"
	}
	return "other"
}

// goPackage is the package of a Go symbol ("github.com/x/y.(*T).M" → "github.com/x/y"),
// or "" when sym does not look like one.
func goPackage(sym string) string {
	slash := strings.LastIndexByte(sym, '/')
	dot := strings.IndexByte(sym[slash+1:], '.')
	if dot <= 0 {
		return ""
	}
	pkg := sym[:slash+1+dot]
	if strings.ContainsAny(pkg, " ()*[]") {
		return ""
	}
	return pkg
}

// print summarises the profile as microseconds a request of measured (the
// scorer's cost measured without perf), against rawPerRun, the raw loop's
// session run at the same batch.
func (p *profile) print(measured cost, rawPerRun time.Duration) {
	p.printFor("OIP v2 binary", measured, rawPerRun)
}

// printFor is print for 256-row requests of the protocol named.
func (p *profile) printFor(protocol string, measured cost, rawPerRun time.Duration) {
	perRequest := measured.perRequest()
	fmt.Printf("\nwhere the scorer's CPU goes on 256-row %s requests: perf at 997 Hz over a window of its own (about %.0f samples, %d requests, %s of CPU a request with perf attached), its shares applied to the %s measured without it:\n", protocol,
		p.cost.cpu.Seconds()*997, p.cost.requests, us(p.cost.perRequest()), us(perRequest))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	var ort time.Duration
	for _, s := range p.buckets {
		d := time.Duration(s.frac * float64(perRequest))
		if s.name == bucketORT {
			ort = d
		}
		if s.frac < 0.005 {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.1f%%\t\n", s.name, us(d), 100*s.frac)
	}
	tw.Flush()
	fmt.Printf("that is %s a request in ONNX Runtime (the raw loop's session run: %s) and %s outside it; %s above the raw loop in all. /proc/PID/stat puts %s of the scorer's time in the kernel (perf: the kernel bucket; its samples gather on pvm_irq_enable, where a VM's kernel lets the sampling interrupt in).\n",
		us(ort), us(rawPerRun), us(perRequest-ort), us(perRequest-rawPerRun), pct(measured.sysShare()))
	fmt.Println("largest symbols outside ONNX Runtime:")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, s := range p.symbols {
		fmt.Fprintf(tw, "  %s\t%s\t%.1f%%\t\n", s.name, us(time.Duration(s.frac*float64(perRequest))), 100*s.frac)
	}
	tw.Flush()
}
