package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// CopyResult counts what CopyMeta copied.
type CopyResult struct {
	Models   int    `json:"models"`
	Versions int    `json:"versions"`
	Events   int    `json:"events"`
	Tokens   int    `json:"tokens"`
	Revision uint64 `json:"revision"`
}

// copyBatch is how many records one transaction of a copy writes: etcd takes
// at most 128 operations in one.
const copyBatch = 100

// CopyMeta copies a registry's metadata from src into dst, which must be
// empty: every event with its revision, time and actor, every model (aliases,
// policy, rejections), version and token. Then it reads both back and fails
// unless they hold the same. Nothing else may change src meanwhile (for a
// bbolt file, its lock sees to that).
func CopyMeta(ctx context.Context, dst, src MetaStore) (*CopyResult, error) {
	err := dst.View(ctx, func(tx MetaTx) error {
		models, err := tx.Models()
		if err != nil {
			return err
		}
		tokens, err := tx.Tokens()
		if err != nil {
			return err
		}
		if tx.Revision() != 0 || len(models) > 0 || len(tokens) > 0 {
			return fmt.Errorf("copy: the destination is not empty (revision %d, %d models, %d tokens): %w", tx.Revision(), len(models), len(tokens), ErrConflict)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &CopyResult{}
	all := func(*Event) bool { return true }
	// Events first, in order: each is appended, and so gets its revision again.
	for since := uint64(0); ; {
		var evs []Event
		if err := src.View(ctx, func(tx MetaTx) (err error) {
			evs, err = tx.Events(since, copyBatch, all)
			return err
		}); err != nil {
			return nil, fmt.Errorf("copy: read events after %d: %w", since, err)
		}
		if len(evs) == 0 {
			break
		}
		err := dst.Update(ctx, func(tx MetaTx) error {
			for _, e := range evs {
				want := e.Revision
				if err := tx.AppendEvent(&e); err != nil {
					return err
				}
				if e.Revision != want {
					return fmt.Errorf("copy: event %d would be %d in the copy: the source's history has a gap", want, e.Revision)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("copy: write events after %d: %w", since, err)
		}
		res.Events += len(evs)
		since = evs[len(evs)-1].Revision
	}
	var models []Model
	var tokens []Token
	if err := src.View(ctx, func(tx MetaTx) (err error) {
		res.Revision = tx.Revision()
		if models, err = tx.Models(); err != nil {
			return err
		}
		tokens, err = tx.Tokens()
		return err
	}); err != nil {
		return nil, fmt.Errorf("copy: read models and tokens: %w", err)
	}
	for _, m := range models {
		var versions []Version
		if err := src.View(ctx, func(tx MetaTx) (err error) {
			versions, err = tx.Versions(m.Name)
			return err
		}); err != nil {
			return nil, fmt.Errorf("copy: read versions of %s: %w", m.Name, err)
		}
		for i := 0; i < len(versions); i += copyBatch {
			batch := versions[i:min(i+copyBatch, len(versions))]
			if err := dst.Update(ctx, func(tx MetaTx) error {
				for j := range batch {
					if err := tx.PutVersion(&batch[j]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("copy: write versions of %s: %w", m.Name, err)
			}
		}
		// The model last: a copy cut short never has a model whose versions
		// are missing.
		if err := dst.Update(ctx, func(tx MetaTx) error { return tx.PutModel(&m) }); err != nil {
			return nil, fmt.Errorf("copy: write model %s: %w", m.Name, err)
		}
		res.Models++
		res.Versions += len(versions)
	}
	for i := 0; i < len(tokens); i += copyBatch {
		batch := tokens[i:min(i+copyBatch, len(tokens))]
		if err := dst.Update(ctx, func(tx MetaTx) error {
			for j := range batch {
				if err := tx.PutToken(&batch[j]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("copy: write tokens: %w", err)
		}
	}
	res.Tokens = len(tokens)
	if err := SameMeta(ctx, dst, src); err != nil {
		return res, fmt.Errorf("copy: the copy differs from the source: %w", err)
	}
	return res, nil
}

// SameMeta returns an error naming the first difference between two stores'
// metadata: revision, events, models, versions (cards included) and tokens.
func SameMeta(ctx context.Context, a, b MetaStore) error {
	type snapshot struct {
		Revision uint64
		Models   []Model
		Versions map[string][]Version
		Tokens   []Token
	}
	read := func(s MetaStore) (*snapshot, error) {
		out := &snapshot{Versions: map[string][]Version{}}
		err := s.View(ctx, func(tx MetaTx) (err error) {
			out.Revision = tx.Revision()
			if out.Models, err = tx.Models(); err != nil {
				return err
			}
			for _, m := range out.Models {
				if out.Versions[m.Name], err = tx.Versions(m.Name); err != nil {
					return err
				}
			}
			out.Tokens, err = tx.Tokens()
			return err
		})
		return out, err
	}
	sa, err := read(a)
	if err != nil {
		return err
	}
	sb, err := read(b)
	if err != nil {
		return err
	}
	if err := sameJSON("revision", sa.Revision, sb.Revision); err != nil {
		return err
	}
	if err := sameJSON("models", sa.Models, sb.Models); err != nil {
		return err
	}
	for name := range sa.Versions {
		if err := sameJSON("versions of "+name, sa.Versions[name], sb.Versions[name]); err != nil {
			return err
		}
	}
	if err := sameJSON("tokens", sa.Tokens, sb.Tokens); err != nil {
		return err
	}
	all := func(*Event) bool { return true }
	for since := uint64(0); ; {
		var ea, eb []Event
		if err := a.View(ctx, func(tx MetaTx) (err error) { ea, err = tx.Events(since, copyBatch, all); return err }); err != nil {
			return err
		}
		if err := b.View(ctx, func(tx MetaTx) (err error) { eb, err = tx.Events(since, copyBatch, all); return err }); err != nil {
			return err
		}
		if err := sameJSON(fmt.Sprintf("events after %d", since), ea, eb); err != nil {
			return err
		}
		if len(ea) == 0 {
			return nil
		}
		since = ea[len(ea)-1].Revision
	}
}

func sameJSON(what string, a, b any) error {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		return fmt.Errorf("%s differ", what)
	}
	return nil
}
