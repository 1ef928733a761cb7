package registry

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"time"
)

// ObjectStore keeps named objects beside the blobs: the prediction log's
// Parquet files (logs/…, outcomes/…). Objects are written once, whole, and
// never changed. The file and s3 blob stores implement it.
type ObjectStore interface {
	// PutObject stores body under key; nothing is visible under key unless
	// all of it was written. An existing key is not overwritten (ErrConflict).
	PutObject(ctx context.Context, key string, body []byte) error
	// GetObject returns an object's bytes, or an error wrapping ErrNotFound.
	GetObject(ctx context.Context, key string) ([]byte, error)
	// ListObjects returns the objects under prefix, sorted by key.
	ListObjects(ctx context.Context, prefix string) ([]ObjectInfo, error)
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// objectKeyRE admits keys under logs/ and outcomes/ made of safe path
// segments, so no caller input reaches a path or object name unchecked.
var objectKeyRE = regexp.MustCompile(`^(logs|outcomes)(/[A-Za-z0-9][A-Za-z0-9=._-]{0,127}){0,6}/?$`)

// CheckObjectKey refuses a key (or listing prefix) outside the object namespaces.
func CheckObjectKey(key string) error {
	if !objectKeyRE.MatchString(key) {
		return Invalidf("object key %q is not under logs/ or outcomes/ with plain segments", key)
	}
	return nil
}

// MaxObjectBytes bounds one object read into memory.
const MaxObjectBytes = 256 << 20

func readObject(r io.Reader, key string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxObjectBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxObjectBytes {
		return nil, fmt.Errorf("object %s is larger than %d bytes", key, MaxObjectBytes)
	}
	return b, nil
}

// ReadObject reads an object's body, bounded by MaxObjectBytes; for drivers.
func ReadObject(r io.Reader, key string) ([]byte, error) { return readObject(r, key) }
