package registrytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// storeDrivers opens one fresh store per driver; the contract runs on each.
var storeDrivers = []struct {
	name string
	open func(t *testing.T, extra string) registry.BlobStore
}{
	{"file", func(t *testing.T, _ string) registry.BlobStore {
		s, err := registry.OpenBlobStore(context.Background(), "file://"+filepath.Join(t.TempDir(), "artifacts"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"s3", func(t *testing.T, extra string) registry.BlobStore {
		gw := testutil.MustS3(t, "models")
		s, err := registry.OpenBlobStore(context.Background(), gw.StoreURL("models", "prod/registry", extra))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

func randomBlob(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b, testutil.MustDigest(t, b)
}

func TestBlobStoreContract(t *testing.T) {
	for _, drv := range storeDrivers {
		t.Run(drv.name, func(t *testing.T) {
			ctx := context.Background()
			s := drv.open(t, "multipart_threshold=6291456&part_size=5242880")

			data, digest := randomBlob(t, 4096)
			if _, err := s.Stat(ctx, digest); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("Stat of a missing blob: %v, want ErrNotFound", err)
			}
			if _, _, err := s.Open(ctx, digest); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("Open of a missing blob: %v, want ErrNotFound", err)
			}
			if err := s.Put(ctx, digest, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if n, err := s.Stat(ctx, digest); err != nil || n != int64(len(data)) {
				t.Fatalf("Stat = %d, %v", n, err)
			}
			rc, n, err := s.Open(ctx, digest)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if n != int64(len(data)) || !bytes.Equal(got, data) {
				t.Fatalf("Open returned %d bytes (size %d), want the %d put", len(got), n, len(data))
			}

			// The same content again is accepted (it is already there).
			if err := s.Put(ctx, digest, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatalf("Put of an existing blob: %v", err)
			}

			// Bytes that do not hash to the stated digest never land.
			other, otherDigest := randomBlob(t, 4096)
			other[0] ^= 1
			if err := s.Put(ctx, otherDigest, int64(len(other)), bytes.NewReader(other)); !errors.Is(err, registry.ErrDigestMismatch) {
				t.Fatalf("Put of mismatching bytes: %v, want a digest error", err)
			}
			if _, err := s.Stat(ctx, otherDigest); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("after a refused Put: Stat = %v, want ErrNotFound", err)
			}

			// Large blobs (multipart on S3), streamed.
			big, bigDigest := randomBlob(t, 13<<20)
			if err := s.Put(ctx, bigDigest, int64(len(big)), io.MultiReader(bytes.NewReader(big))); err != nil {
				t.Fatalf("Put of 13 MiB: %v", err)
			}
			rc, _, err = s.Open(ctx, bigDigest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, registry.NewVerifyingReader(rc, bigDigest, int64(len(big)))); err != nil {
				t.Fatalf("reading back 13 MiB: %v", err)
			}
			rc.Close()
			badBig := append([]byte(nil), big...)
			badBig[len(badBig)-1] ^= 1
			if err := s.Put(ctx, strings.Repeat("ab", 32), int64(len(badBig)), bytes.NewReader(badBig)); !errors.Is(err, registry.ErrDigestMismatch) {
				t.Fatalf("Put of 13 MiB under the wrong digest: %v, want ErrDigestMismatch", err)
			}
			if _, err := s.Stat(ctx, strings.Repeat("ab", 32)); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("after a refused large Put: Stat = %v, want ErrNotFound", err)
			}

			list, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 {
				t.Fatalf("List = %v, want the 2 blobs put", list)
			}
			if err := s.Delete(ctx, digest); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, digest); err != nil {
				t.Fatalf("deleting a missing blob: %v", err)
			}
			if _, err := s.Stat(ctx, digest); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("after Delete: %v", err)
			}

			// No caller input reaches a key unchecked.
			for _, bad := range []string{"../x", "", strings.Repeat("A", 64), strings.Repeat("a", 63) + "/"} {
				if err := s.Put(ctx, bad, 1, strings.NewReader("x")); !errors.Is(err, registry.ErrInvalid) {
					t.Fatalf("Put(%q): %v, want ErrInvalid", bad, err)
				}
			}
		})
	}
}

// An S3 store with no credentials anywhere says what to set, quickly: with an
// endpoint (an S3-compatible service) it does not ask EC2's metadata service.
func TestS3WithoutCredentialsSaysWhatToSet(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	_, err := registry.OpenBlobStore(context.Background(), "s3://models/p?endpoint=http://127.0.0.1:9&path_style=true&region=us-east-1&retries=1&timeout=5s")
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") || !strings.Contains(err.Error(), "access disabled to EC2 IMDS") {
		t.Fatalf("open without credentials: %v", err)
	}
}

// Opening an S3 store on a bucket that is not there, or with credentials the
// gateway refuses, says which in a line, without the SDK's request and host ids.
func TestS3OpenSaysWhyTheBucketIsUnusable(t *testing.T) {
	ctx := context.Background()
	gw := testutil.MustS3(t, "models")
	_, err := registry.OpenBlobStore(ctx, gw.StoreURL("nosuch", "p", ""))
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), `bucket "nosuch"`) || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "RequestID") {
		t.Fatalf("open on a missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	_, err = registry.OpenBlobStore(ctx, gw.StoreURL("models", "p", ""))
	if err == nil || !strings.Contains(err.Error(), "refuses these credentials") || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") || strings.Contains(err.Error(), "RequestID") {
		t.Fatalf("open with a wrong secret: %v", err)
	}
}
