package etcdmeta_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	_ "github.com/modelops/modelops/internal/registry/etcdmeta"
	"github.com/modelops/modelops/internal/registry/registrytest"
	"github.com/modelops/modelops/internal/testutil"
)

// The contract on a real three-member etcd cluster: each store its own prefix.
func TestMetaStore(t *testing.T) {
	cluster := testutil.MustEtcd(t, 3)
	var n atomic.Int64
	registrytest.RunMetaStore(t, func(t *testing.T) registry.MetaStore {
		s, err := registry.OpenMetaStore(context.Background(), cluster.URL(fmt.Sprintf("contract-%d", n.Add(1))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
