package etcdmeta

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ElectionTTL is how long a leader that died unseen (kill -9, a cut cable)
// keeps its office: the lease of its campaign, in seconds.
const ElectionTTL = 5

func (s *Store) electionPrefix(name string) string { return s.cfg.Prefix + "election/" + name }

// Campaign runs lead while this process is the one elected among all that
// campaign for name (etcd's election on a lease), and campaigns again when it
// loses office, until ctx is done. value says who leads (a replica's URL).
// lead's context ends when office is lost: a lease that could not be kept
// alive, or ctx.
func (s *Store) Campaign(ctx context.Context, name, value string, lead func(ctx context.Context)) {
	for attempt := 0; ctx.Err() == nil; {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(min(attempt, 10)) * 200 * time.Millisecond):
			}
		}
		attempt++
		sess, err := concurrency.NewSession(s.client, concurrency.WithTTL(ElectionTTL), concurrency.WithContext(ctx))
		if err != nil {
			s.log.Debug("election: no session", "name", name, "err", err)
			continue
		}
		el := concurrency.NewElection(sess, s.electionPrefix(name))
		if err := el.Campaign(ctx, value); err != nil {
			sess.Close()
			s.log.Debug("election: campaign failed", "name", name, "err", err)
			continue
		}
		select {
		case <-sess.Done():
			continue // the lease ran out while waiting: not elected after all
		default:
		}
		attempt = 0
		s.log.Info("elected", "name", name, "value", value)
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
			case <-lctx.Done():
			}
			cancel()
		}()
		lead(lctx)
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		el.Resign(rctx)
		rcancel()
		sess.Close()
		s.log.Info("out of office", "name", name, "value", value)
	}
}

// Leader returns the value of the elected leader for name, "" when none is.
func (s *Store) Leader(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.electionPrefix(name)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("leader of %s: %w", name, s.wrap("read", err))
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
