package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/modelops/modelops/internal/artifact"
)

// PushRequest is one artifact on its way into the registry.
type PushRequest struct {
	Model string
	// Digest is the sha256 the client states for the artifact.
	Digest string
	// Artifact streams the ONNX bytes.
	Artifact io.Reader
	// Card is the model card JSON (may be empty).
	Card  []byte
	Actor string
	// Reason is why, kept with the version and its pushed event.
	Reason string
}

// PushResult says which version holds the artifact.
type PushResult struct {
	Version *Version
	// Created is false when the same artifact was already a version of the model.
	Created bool
	Event   *Event
}

// Push stages the artifact while hashing it, verifies the stated digest, loads it
// in the runtime and checks its signature and golden inputs, stores the blob, and
// only then records the version and a pushed event in one transaction. Any failure
// leaves no version behind.
func (r *Registry) Push(ctx context.Context, req PushRequest) (*PushResult, error) {
	if err := CheckModelName(req.Model); err != nil {
		return nil, err
	}
	if err := CheckDigest(req.Digest); err != nil {
		return nil, err
	}
	card, err := artifact.ParseCard(req.Card)
	if err != nil {
		return nil, &kindError{ErrInvalid, err}
	}

	var want *artifact.Signature
	if m, err := r.Model(ctx, req.Model); err == nil {
		want = &m.Signature
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	} else if sig, ok := artifact.Declared(req.Model); ok {
		want = &sig
	}

	staged, size, err := r.stage(ctx, req)
	if err != nil {
		return nil, err
	}
	defer os.Remove(staged)

	sig, err := r.Verifier.VerifyArtifact(ctx, staged, req.Model, want, card)
	if err != nil {
		if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			// The verifier's own failure, or the client gone: not the artifact's.
			return nil, fmt.Errorf("push %s: %w", req.Model, err)
		}
		return nil, &kindError{ErrInvalidModel, fmt.Errorf("push %s: %w", req.Model, err)}
	}

	f, err := os.Open(staged)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", req.Model, err)
	}
	defer f.Close()
	r.pushMu.RLock()
	defer r.pushMu.RUnlock()
	if err := r.Blobs.Put(ctx, req.Digest, size, f); err != nil {
		return nil, fmt.Errorf("push %s: store blob in %s: %w", req.Model, r.Blobs, err)
	}

	res := &PushResult{}
	err = r.Meta.Update(ctx, func(tx MetaTx) error {
		m, err := tx.Model(req.Model)
		if errors.Is(err, ErrNotFound) {
			m = &Model{Name: req.Model, Signature: sig, CreatedAt: r.Now().UTC()}
		} else if err != nil {
			return err
		} else if err := sig.Match(m.Signature); err != nil {
			// Another push fixed the signature while this one was verifying.
			return fmt.Errorf("push %s: %w: %v", req.Model, ErrInvalidModel, err)
		}
		// The same bytes pushed again (a retry) name the version they already are.
		versions, err := tx.Versions(req.Model)
		if err != nil {
			return err
		}
		for i := range versions {
			if versions[i].Digest == req.Digest {
				res.Version = &versions[i]
				return nil
			}
		}
		m.Latest++
		v := &Version{Model: req.Model, Number: m.Latest, Digest: req.Digest, Size: size,
			CreatedAt: r.Now().UTC(), Actor: actorOr(req.Actor), Reason: req.Reason, Card: card.Raw()}
		e := &Event{Actor: v.Actor, Model: req.Model, Kind: EventPushed, To: v.Number, Reason: req.Reason}
		if err := r.appendEvent(tx, e); err != nil {
			return err
		}
		m.Revision = e.Revision
		if err := tx.PutVersion(v); err != nil {
			return err
		}
		res.Version, res.Created, res.Event = v, true, e
		return tx.PutModel(m)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// stage copies the upload to a local file, hashing as it goes, and checks the
// stated digest and the size limit.
func (r *Registry) stage(ctx context.Context, req PushRequest) (string, int64, error) {
	f, err := os.CreateTemp(r.StagingDir, "upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("push %s: staging: %w", req.Model, err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	limit := r.MaxArtifactBytes
	n, err := io.Copy(io.MultiWriter(f, h), &ctxReader{ctx, io.LimitReader(req.Artifact, limit+1)})
	if err != nil {
		return "", 0, fmt.Errorf("push %s: reading the artifact: %w", req.Model, err)
	}
	if n > limit {
		return "", 0, fmt.Errorf("push %s: %w: artifact is larger than %d bytes", req.Model, ErrTooLarge, limit)
	}
	if n == 0 {
		return "", 0, Invalidf("push %s: the artifact is empty", req.Model)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != req.Digest {
		return "", 0, fmt.Errorf("push %s: %w: the artifact hashes to sha256 %s, the request states %s", req.Model, ErrDigestMismatch, got, req.Digest)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("push %s: staging: %w", req.Model, err)
	}
	ok = true
	return f.Name(), n, nil
}

func actorOr(a string) string {
	if a == "" {
		return "anonymous"
	}
	return a
}
