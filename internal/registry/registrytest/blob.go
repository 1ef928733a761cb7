package registrytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/registry"
)

// RunBlobStore runs the contract every BlobStore keeps on a fresh store made by
// open (for S3, one that uploads blobs over 6 MiB in 5 MiB parts, so the 13 MiB
// blob below goes up in parts).
func RunBlobStore(t *testing.T, open func(t *testing.T) registry.BlobStore) {
	t.Run("Contract", func(t *testing.T) { blobContract(t, open(t)) })
	t.Run("Context", func(t *testing.T) { blobContext(t, open(t)) })
}

func randomBlob(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	h := sha256.Sum256(b)
	return b, hex.EncodeToString(h[:])
}

func blobContract(t *testing.T, s registry.BlobStore) {
	{
		{
			ctx := context.Background()

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
		}
	}
}

// blobContext: a done context stops a put before anything lands.
func blobContext(t *testing.T, s registry.BlobStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data, digest := randomBlob(t, 4096)
	if err := s.Put(ctx, digest, int64(len(data)), bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.Stat(context.Background(), digest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after a cancelled Put: Stat = %v, want ErrNotFound", err)
	}
}
