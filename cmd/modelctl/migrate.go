package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/modelops/modelops/internal/registry"
)

type migrateCmd struct{ *env }

func (c *migrateCmd) Usage() string {
	return "migrate --from URL --to URL   copy a registry's metadata (bolt:// → etcd://, say) and verify the copy; the control plane must be stopped"
}

func (c *migrateCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "migrate")
	from := fs.String("from", "", "metadata store to copy: bolt:///DIR/registry.db or etcd://HOST:PORT,…/PREFIX (required)")
	to := fs.String("to", "", "empty metadata store to copy into (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *to == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("migrate needs --from URL and --to URL")
	}
	if err := mustExist(*from); err != nil {
		return err
	}
	src, err := registry.OpenMetaStore(ctx, *from)
	if err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	defer src.Close()
	dst, err := registry.OpenMetaStore(ctx, *to)
	if err != nil {
		return fmt.Errorf("migrate: --to: %w", err)
	}
	defer dst.Close()
	res, err := registry.CopyMeta(ctx, dst, src)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(c.stdout, "copied %d models, %d versions, %d events (revision %d) and %d tokens; the copy reads back the same\n",
		res.Models, res.Versions, res.Events, res.Revision, res.Tokens)
	fmt.Fprintf(c.stdout, "start the control plane with --meta on the copy; artifacts stay where --store says\n")
	return nil
}

// mustExist refuses a bbolt source that is not there: opening it would make an
// empty registry, and copying that is no migration.
func mustExist(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "bolt" {
		return nil // the driver says what is wrong
	}
	p := u.Path
	if u.Host != "" && u.Host != "localhost" {
		p = filepath.Join(u.Host, u.Path)
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate: --from %s: no such file", p)
	}
	return nil
}
