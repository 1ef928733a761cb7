package main

import (
	"math"
	"testing"
)

// Lines as `perf report --stdio -q --no-children --sort dso,sym -t '\t'` prints
// them for a scorer: each sample lands in the bucket of its library, kernel or
// Go package.
func TestParsePerfReport(t *testing.T) {
	out := []byte(" 40.00% \tlibonnxruntime.so.1\t[.] 0x000000000156811f\n" +
		" 10.00% \tlibonnxruntime.so.1\t[.] 0x00000000016e1dc4\n" +
		" 20.00% \t[kernel.kallsyms]  \t[k] pvm_irq_enable\n" +
		"  8.00% \tscorer             \t[.] runtime.scanobject\n" +
		"  7.00% \tscorer             \t[.] runtime.mallocgc\n" +
		"  5.00% \tscorer             \t[.] github.com/valyala/fasthttp.(*Request).Body\n" +
		"  4.00% \tscorer             \t[.] runtime.cgocall\n" +
		"  3.00% \tscorer             \t[.] encoding/json.(*decodeState).object\n" +
		"  2.00% \tlibc.so.6          \t[.] __memmove_avx_unaligned_erms\n" +
		"  1.00% \tscorer             \t[.] _cgo_0b49d6ed4a0b_Cfunc_RunOrtSession\n" +
		"\n")
	p, err := parsePerfReport(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		bucketORT: 0.5,
		"kernel (loopback TCP, syscalls, scheduling, page faults)":    0.2,
		"Go runtime: garbage collection":                              0.08,
		"Go runtime: allocation":                                      0.07,
		"Go: github.com/valyala/fasthttp":                             0.05,
		"Go runtime: cgo and system call transitions":                 0.04,
		"Go: encoding/json":                                           0.03,
		"C and C++ libraries (ONNX Runtime's allocations and copies)": 0.02,
		"C in the binary: scorer (cgo glue)":                          0.01,
	}
	if len(p.buckets) != len(want) {
		t.Errorf("buckets %v, want %v", p.buckets, want)
	}
	for i, s := range p.buckets {
		if w, ok := want[s.name]; !ok || math.Abs(w-s.frac) > 1e-9 {
			t.Errorf("bucket %q: %.3f, want %.3f (present: %v)", s.name, s.frac, w, ok)
		}
		if i > 0 && s.frac > p.buckets[i-1].frac {
			t.Errorf("buckets not largest first: %v", p.buckets)
		}
	}
	for _, s := range p.symbols {
		if s.name == "0x000000000156811f (libonnxruntime.so.1)" {
			t.Errorf("ONNX Runtime's symbols are listed among those outside it: %v", p.symbols)
		}
	}
	if _, err := parsePerfReport([]byte("\n# nothing\n")); err == nil {
		t.Errorf("a report with no samples: no error")
	}
}

func TestGoPackage(t *testing.T) {
	for sym, want := range map[string]string{
		"github.com/modelops/modelops/internal/scorerapi.(*Scorer).admit": "github.com/modelops/modelops/internal/scorerapi",
		"encoding/json.(*decodeState).object":                             "encoding/json",
		"syscall.Syscall6":                                                "syscall",
		"__memmove_avx_unaligned_erms":                                    "",
		"0x000000000156811f":                                              "",
	} {
		if got := goPackage(sym); got != want {
			t.Errorf("goPackage(%q) = %q, want %q", sym, got, want)
		}
	}
}
