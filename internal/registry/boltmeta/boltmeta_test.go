package boltmeta_test

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/boltmeta"
	"github.com/modelops/modelops/internal/registry/registrytest"
)

// The contract on a bbolt file, opened by URL; the file is checked afterwards.
func TestMetaStore(t *testing.T) {
	registrytest.RunMetaStore(t, func(t *testing.T) registry.MetaStore {
		u := url.URL{Scheme: "bolt", Path: filepath.Join(t.TempDir(), "registry.db")}
		s, err := registry.OpenMetaStore(context.Background(), u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.(*boltmeta.Store).Check(); err != nil {
				t.Errorf("bbolt check: %v", err)
			}
			s.Close()
		})
		return s
	})
}
