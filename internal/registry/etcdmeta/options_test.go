package etcdmeta_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// roundTrip stores a model through a store at rawURL and reads it back.
func roundTrip(t *testing.T, rawURL string) error {
	t.Helper()
	ctx := context.Background()
	s, err := registry.OpenMetaStore(ctx, rawURL)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx registry.MetaTx) error { return tx.PutModel(&registry.Model{Name: "m", Latest: 7}) }); err != nil {
		return err
	}
	return s.View(ctx, func(tx registry.MetaTx) error {
		m, err := tx.Model("m")
		if err == nil && m.Latest != 7 {
			t.Errorf("read back %+v", m)
		}
		return err
	})
}

// A cluster that asks for client certificates is reached with tls_ca,
// tls_cert and tls_key, and not without them.
func TestTLS(t *testing.T) {
	files := testutil.MustTLSFiles(t)
	cluster := testutil.MustEtcdWith(t, 1, testutil.EtcdOptions{TLS: &files})
	q := url.Values{"tls_ca": {files.CAFile}, "tls_cert": {files.CertFile}, "tls_key": {files.KeyFile}}
	if err := roundTrip(t, cluster.URL("tls")+"?"+q.Encode()); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	err := roundTrip(t, cluster.URL("tls")+"?dial_timeout=1s&timeout=1s")
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("without TLS options: %v, want ErrUnavailable", err)
	}
	q.Del("tls_key")
	if err := roundTrip(t, cluster.URL("tls")+"?"+q.Encode()); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "tls_cert and tls_key go together") {
		t.Fatalf("a certificate without its key: %v", err)
	}
}

// With etcd's authentication on, the user and the password from
// password_file get in; a wrong password is told apart from an outage.
func TestUserAndPassword(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 1)
	cl, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.UserAdd(ctx, "root", "s3cret-pw"); err != nil {
		t.Fatal(err)
	}
	cl.RoleAdd(ctx, "root") // there already, on some versions
	if _, err := cl.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret-pw\n"), 0o600)
	base := "etcd://root@" + strings.Join(cluster.Endpoints(), ",") + "/auth"
	if err := roundTrip(t, base+"?password_file="+pw); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	os.WriteFile(pw, []byte("wrong"), 0o600)
	err = roundTrip(t, base+"?password_file="+pw)
	if err == nil || !strings.Contains(err.Error(), "refuses these credentials") || errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("with a wrong password: %v", err)
	}
	if err := roundTrip(t, "etcd://"+strings.Join(cluster.Endpoints(), ",")+"/auth?password_file="+pw); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("a password without a user: %v", err)
	}
}

// A record larger than etcd takes in one request (a huge model card) is
// refused as too large, not taken for an outage, and changes nothing.
func TestARecordTooLargeForEtcd(t *testing.T) {
	ctx := context.Background()
	cluster := testutil.MustEtcd(t, 1)
	s, err := registry.OpenMetaStore(ctx, cluster.URL("large"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	card := []byte(`{"notes":"` + strings.Repeat("x", 2<<20) + `"}`)
	err = s.Update(ctx, func(tx registry.MetaTx) error {
		if err := tx.PutModel(&registry.Model{Name: "m", Latest: 1}); err != nil {
			return err
		}
		return tx.PutVersion(&registry.Version{Model: "m", Number: 1, Card: card})
	})
	if !errors.Is(err, registry.ErrTooLarge) || errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("a 2 MiB card: %v, want ErrTooLarge", err)
	}
	if err := s.View(ctx, func(tx registry.MetaTx) error {
		_, err := tx.Model("m")
		return err
	}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("the refused change stored a model: %v", err)
	}
}
