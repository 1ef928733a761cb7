package registry

import (
	"strings"
	"testing"
)

func FuzzNames(f *testing.F) {
	for _, s := range []string{"calling-score", "../etc", "%2e%2e", "a\x00b", strings.Repeat("a", 10000), "саlling-score", "-x", "a/b", "A", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckModelName(name) == nil {
			if len(name) > 63 || strings.ContainsAny(name, "./\\%\x00 ") || strings.ToLower(name) != name {
				t.Fatalf("accepted a hostile name %q", name)
			}
			for _, r := range name {
				if r > 127 {
					t.Fatalf("accepted a non-ASCII name %q", name)
				}
			}
		}
		if k, err := BlobKey(name); err == nil && (strings.Contains(k, "..") || len(k) != len("blobs/sha256/")+64) {
			t.Fatalf("blob key %q from %q", k, name)
		}
	})
}
