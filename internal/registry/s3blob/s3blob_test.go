package s3blob_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/registrytest"
	_ "github.com/modelops/modelops/internal/registry/s3blob"
	"github.com/modelops/modelops/internal/testutil"
)

// The contract on a real S3 service (the Versity gateway), with small parts so
// that the suite's 13 MiB blob goes up in parts.
func TestBlobStore(t *testing.T) {
	registrytest.RunBlobStore(t, func(t *testing.T) registry.BlobStore {
		gw := testutil.MustS3(t, "models")
		s, err := registry.OpenBlobStore(context.Background(), gw.StoreURL("models", "prod/registry", "multipart_threshold=6291456&part_size=5242880"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
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
