package fileblob_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	_ "github.com/modelops/modelops/internal/registry/fileblob"
	"github.com/modelops/modelops/internal/registry/registrytest"
)

func TestBlobStore(t *testing.T) {
	registrytest.RunBlobStore(t, func(t *testing.T) registry.BlobStore {
		s, err := registry.OpenBlobStore(context.Background(), "file://"+filepath.Join(t.TempDir(), "artifacts"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
