package loader

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// threadNice reads the calling thread's nice value from /proc.
func threadNice(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatalf("reading the thread's stat: %v", err)
	}
	// Fields after the command name (which ends with ')'): state is field 3,
	// nice is field 19.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatalf("nice field %q: %v", fields[16], err)
	}
	return n
}

func TestSessionsArePreparedAtLowPriority(t *testing.T) {
	var inside int
	onBackgroundThread(func() { inside = threadNice(t) })
	if inside != loaderNice {
		t.Fatalf("prepare ran at nice %d, want %d", inside, loaderNice)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if n := threadNice(t); n == loaderNice {
		t.Fatalf("the caller's thread is at nice %d too", n)
	}
}
