package registry_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// hookVerifier runs the real verification, then calls after: the moment between
// a verified upload and its blob write.
type hookVerifier struct {
	after func()
}

func (h hookVerifier) VerifyArtifact(ctx context.Context, path, model string, want *artifact.Signature, card *artifact.Card) (artifact.Signature, error) {
	sig, err := loader.Verifier{}.VerifyArtifact(ctx, path, model, want, card)
	if h.after != nil {
		h.after()
	}
	return sig, err
}

func TestPushFailsCleanlyWhenS3StopsMidPush(t *testing.T) {
	ctx := context.Background()
	gw := testutil.MustS3(t, "models")
	blobs, err := registry.OpenBlobStore(ctx, gw.StoreURL("models", "p", ""))
	if err != nil {
		t.Fatal(err)
	}
	hv := &hookVerifier{}
	r := registry.New(filepath.Join(t.TempDir(), "registry.db"), blobs, hv)
	if err := r.Open(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer MustCheck(t, r)

	m := testutil.MustModel(t, 1)
	data := mustRead(t, m.Path)
	hv.after = gw.Stop
	start := time.Now()
	_, err = r.Push(ctx, registry.PushRequest{Model: "calling-score", Digest: m.Digest, Artifact: bytes.NewReader(data), Card: m.Card})
	if !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "store blob") {
		t.Fatalf("push while S3 is down: %v, want ErrUnavailable saying the blob could not be stored", err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	// Said once and briefly: the store, the operation, the network's words, the
	// attempts; not the SDK's layers ("https response error StatusCode: 0, …").
	if msg := err.Error(); strings.Count(msg, "s3://") != 1 || strings.Contains(msg, "StatusCode") || !strings.Contains(msg, "S3 PutObject: dial tcp") || !strings.Contains(msg, "attempts)") {
		t.Fatalf("push while S3 is down says %q", msg)
	}
	if ms, _ := r.Models(ctx); len(ms) != 0 {
		t.Fatalf("a failed push recorded %+v", ms)
	}

	hv.after = nil
	gw.Start()
	if _, err := blobs.Stat(ctx, m.Digest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after the failed push the final key holds something: %v", err)
	}
	res, err := r.Push(ctx, registry.PushRequest{Model: "calling-score", Digest: m.Digest, Artifact: bytes.NewReader(data), Card: m.Card})
	if err != nil || res.Version.Number != 1 {
		t.Fatalf("push after S3 came back: %+v %v", res, err)
	}
}

// stopAfter stops the gateway once n bytes have been read: S3 dies in the middle
// of a multipart upload.
type stopAfter struct {
	r    *bytes.Reader
	n    int
	read int
	stop func()
}

func (s *stopAfter) Read(p []byte) (int, error) {
	k, err := s.r.Read(p)
	s.read += k
	if s.stop != nil && s.read >= s.n {
		s.stop()
		s.stop = nil
	}
	return k, err
}

func TestMultipartUploadCutLeavesNothing(t *testing.T) {
	ctx := context.Background()
	gw := testutil.MustS3(t, "models")
	s, err := registry.OpenBlobStore(ctx, gw.StoreURL("models", "p", "multipart_threshold=6291456&part_size=5242880"))
	if err != nil {
		t.Fatal(err)
	}
	data, digest := randomBlob(t, 12<<20)
	err = s.Put(ctx, digest, int64(len(data)), &stopAfter{r: bytes.NewReader(data), n: 7 << 20, stop: gw.Stop})
	if err == nil {
		t.Fatal("a multipart upload to a stopped S3 succeeded")
	}
	gw.Start()
	if _, err := s.Stat(ctx, digest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after a cut multipart upload the final key holds something: %v", err)
	}
	if err := s.Put(ctx, digest, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("the same upload after S3 came back: %v", err)
	}
}

func TestGCFindsOnlyUnreferencedBlobs(t *testing.T) {
	ctx := context.Background()
	r, dir := MustOpen(t)
	v := mustPush(t, r, "calling-score", testutil.MustModel(t, 1))
	orphan, orphanDigest := randomBlob(t, 100)
	if err := r.Blobs.Put(ctx, orphanDigest, int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	res, err := r.GC(ctx, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unreferenced) != 0 || res.Kept != 1 {
		t.Fatalf("within the grace period: %+v, want the orphan kept", res)
	}
	res, err = r.GC(ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unreferenced) != 1 || res.Unreferenced[0].Digest != orphanDigest || res.Deleted {
		t.Fatalf("dry run: %+v", res)
	}
	if _, err := r.Blobs.Stat(ctx, orphanDigest); err != nil {
		t.Fatalf("a dry run deleted the orphan: %v", err)
	}
	if _, err := r.GC(ctx, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Blobs.Stat(ctx, orphanDigest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("apply kept the orphan: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "artifacts", "blobs", "sha256", v.Digest)); err != nil {
		t.Fatalf("gc deleted a referenced blob: %v", err)
	}
}
