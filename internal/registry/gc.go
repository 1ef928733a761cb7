package registry

import (
	"context"
	"time"
)

// GCResult lists the blobs no version references.
type GCResult struct {
	Unreferenced []BlobInfo `json:"unreferenced"`
	// Deleted is true when the blobs were removed (apply), false for a dry run.
	Deleted bool `json:"deleted"`
	// Kept counts unreferenced blobs younger than the grace period.
	Kept int `json:"kept_in_grace"`
}

// GC finds blobs that no version references (leftovers of failed pushes) and, with
// apply, deletes those older than grace. Pushes wait while it runs, so a blob that
// is being recorded is never taken for garbage.
func (r *Registry) GC(ctx context.Context, grace time.Duration, apply bool) (*GCResult, error) {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	referenced := map[string]bool{}
	err := r.Meta.View(ctx, func(tx MetaTx) error {
		models, err := tx.Models()
		if err != nil {
			return err
		}
		for _, m := range models {
			versions, err := tx.Versions(m.Name)
			if err != nil {
				return err
			}
			for _, v := range versions {
				referenced[v.Digest] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	blobs, err := r.Blobs.List(ctx)
	if err != nil {
		return nil, err
	}
	res := &GCResult{Unreferenced: []BlobInfo{}, Deleted: apply}
	cutoff := r.Now().Add(-grace)
	for _, b := range blobs {
		if referenced[b.Digest] {
			continue
		}
		if b.ModTime.After(cutoff) {
			res.Kept++
			continue
		}
		res.Unreferenced = append(res.Unreferenced, b)
		if apply {
			if err := r.Blobs.Delete(ctx, b.Digest); err != nil {
				return res, err
			}
			r.Logger.Info("gc: deleted unreferenced blob", "digest", b.Digest, "size", b.Size)
		}
	}
	return res, nil
}
