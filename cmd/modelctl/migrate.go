package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/registry"
)

type migrateCmd struct {
	*env
	from, to string
}

func (c *migrateCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate --from URL --to URL",
		Short: "copy a registry's metadata (bolt:// → etcd://, say) and verify the copy; the control plane must be stopped",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	cmd.Flags().StringVar(&c.from, "from", "", "metadata store to copy: bolt:///DIR/registry.db or etcd://HOST:PORT,…/PREFIX (required)")
	cmd.Flags().StringVar(&c.to, "to", "", "empty metadata store to copy into (required)")
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("to")
	return cmd
}

func (c *migrateCmd) Run(ctx context.Context, _ []string) error {
	if c.from == "" || c.to == "" {
		return fmt.Errorf("migrate needs --from URL and --to URL")
	}
	if err := mustExist(c.from); err != nil {
		return err
	}
	src, err := registry.OpenMetaStore(ctx, c.from)
	if err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	defer src.Close()
	dst, err := registry.OpenMetaStore(ctx, c.to)
	if err != nil {
		return fmt.Errorf("migrate: --to: %w", err)
	}
	defer dst.Close()
	res, err := registry.CopyMeta(ctx, dst, src)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return c.print(res, func(w io.Writer) {
		fmt.Fprintf(w, "copied %d models, %d versions, %d events (revision %d) and %d tokens; the copy reads back the same\n",
			res.Models, res.Versions, res.Events, res.Revision, res.Tokens)
		fmt.Fprintf(w, "start the control plane with --meta on the copy; artifacts stay where --store says\n")
	})
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
