package memblob_test

import (
	"context"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	_ "github.com/modelops/modelops/internal/registry/memblob"
	"github.com/modelops/modelops/internal/registry/registrytest"
)

func TestBlobStore(t *testing.T) {
	registrytest.RunBlobStore(t, func(t *testing.T) registry.BlobStore {
		s, err := registry.OpenBlobStore(context.Background(), "mem://")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
