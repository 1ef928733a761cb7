package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// childReplica is `modelctl serve` in a process of its own, so that it can be
// killed with SIGKILL.
type childReplica struct {
	url string
	cmd *exec.Cmd
}

func startChildReplica(t *testing.T, bin, meta, store string) *childReplica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data", t.TempDir(), "--meta", meta, "--store", store,
		"--monitor-window", "3s", "--eval-interval", "100ms")
	cmd.Env = append(os.Environ(), "MODELOPS_ADMIN_TOKEN="+adminToken)
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &childReplica{url: "http://" + addr, cmd: cmd}
	t.Cleanup(r.kill)
	waitFor(t, "replica "+r.url+" to answer", 30*time.Second, func() bool {
		resp, err := http.Get(r.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

func (r *childReplica) kill() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		r.cmd.Wait()
	}
}

// Two control planes, each `modelctl serve` in a child process, on one
// three-member etcd cluster and a shared file blob store; two scorers are
// each given both URLs, one with the monitor's replica first. The monitor's
// replica is killed with SIGKILL during a promotion storm: the other takes
// the monitor over within 10 s, every acknowledged promotion is in the
// history, the scorers that followed the dead replica follow the other and
// miss no promotion, and a bad version promoted afterwards is rolled back.
func TestKillNineOfTheMonitorsReplicaWithScorersFollowingBoth(t *testing.T) {
	if testing.Short() {
		t.Skip("short: control planes in child processes on a real etcd cluster")
	}
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "modelctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/modelctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cluster := testutil.MustEtcd(t, 3)
	meta, store := cluster.URL("ha"), "file://"+filepath.Join(t.TempDir(), "artifacts")
	a := startChildReplica(t, bin, meta, store)
	b := startChildReplica(t, bin, meta, store)

	var leader, other *childReplica
	waitFor(t, "one replica to lead the monitor", 15*time.Second, func() bool {
		la, lb := leaderOf(t, a.url), leaderOf(t, b.url)
		switch {
		case la.Monitor == "" || la.Monitor != lb.Monitor:
			return false
		case la.Monitor == a.url:
			leader, other = a, b
		case la.Monitor == b.url:
			leader, other = b, a
		default:
			return false
		}
		return true
	})
	both := leader.url + "," + other.url
	cl := adminClient(other.url + "," + leader.url)
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	bad := testutil.NaNModel(t)
	mustPush(t, cl, bad)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPolicy(ctx, "calling-score", wire.PolicyBody{MinSamples: ptr(int64(20)), FailureLimit: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	// Both scorers are given both URLs; the first follows the monitor's
	// replica (first in its list), the second the other one.
	s1 := fastScorer(t, both)
	s2 := fastScorer(t, other.url+","+leader.url)
	scorers := []string{s1.URL(), s2.URL()}
	hc := &http.Client{Timeout: 10 * time.Second}
	serving := func(v int) func() bool {
		return func() bool {
			for _, u := range scorers {
				if r := score(hc, u, testutil.Row(0.1)); r.err != nil || r.resp.Version != v {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "v1 on both scorers", 30*time.Second, serving(1))
	fleet := func(url string) int {
		nodes, err := adminClient(url).Fleet(ctx)
		if err != nil {
			return -1
		}
		return len(nodes)
	}
	waitFor(t, "both scorers' reports to reach the monitor", 20*time.Second, func() bool { return fleet(leader.url) == 2 })

	stop := make(chan struct{})
	wg := traffic(t, scorers, stop)
	defer func() { close(stop); wg.Wait() }()

	// The storm: promotions between v1 and v2 through both replicas, each
	// client given both URLs (the monitor's first, or the other's).
	var (
		mu    sync.Mutex
		acked = map[uint64]registry.Event{}
	)
	stormCtx, stopStorm := context.WithCancel(ctx)
	var storm sync.WaitGroup
	for w, urls := range []string{both, other.url + "," + leader.url} {
		storm.Add(1)
		go func() {
			defer storm.Done()
			c := adminClient(urls)
			c.HTTP.Timeout = 5 * time.Second
			for i := 0; stormCtx.Err() == nil; i++ {
				ev, err := c.Promote(stormCtx, "calling-score", wire.AliasBody{Version: 1 + (i+w)%2, Reason: fmt.Sprintf("storm %d/%d", w, i)})
				if err == nil && !ev.Unchanged {
					mu.Lock()
					acked[ev.Revision] = *ev
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	waitFor(t, "the storm to get going", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 10
	})
	leader.kill()
	waitFor(t, "the other replica to take the monitor over", 10*time.Second, func() bool {
		li := leaderOf(t, other.url)
		return li.Leading && li.Monitor == other.url
	})
	time.Sleep(500 * time.Millisecond) // the storm goes on against the survivor
	stopStorm()
	storm.Wait()

	// Every acknowledged promotion is in the history, in the order of its revision.
	evs, err := cl.Events(ctx, "calling-score", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	byRev := map[uint64]registry.Event{}
	for _, e := range evs {
		byRev[e.Revision] = e
	}
	for rev, want := range acked {
		if got, ok := byRev[rev]; !ok || got.Kind != want.Kind || got.From != want.From || got.To != want.To {
			t.Fatalf("acknowledged event %d (%s v%d→v%d) is %+v after the kill", rev, want.Kind, want.From, want.To, got)
		}
	}
	t.Logf("%d promotions acknowledged during the storm, all in the history", len(acked))

	// The promotions after the kill reach both scorers, the one that followed
	// the dead replica included.
	for _, v := range []int{1, 2} {
		if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: v, Reason: "after the kill"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("v%d on both scorers after the kill", v), 30*time.Second, serving(v))
	}
	waitFor(t, "both scorers' reports to reach the new monitor", 20*time.Second, func() bool { return fleet(other.url) == 2 })
	time.Sleep(2 * time.Second) // traffic on v2 that the next version is compared with

	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 3, Reason: "looks fine"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new monitor to roll the bad version back", 30*time.Second, func() bool {
		m, err := cl.Model(ctx, "calling-score")
		return err == nil && m.Production == 2
	})
	evs, err = cl.Events(ctx, "calling-score", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Kind != registry.EventAutoRollback || last.From != 3 || last.To != 2 {
		t.Fatalf("last event %+v, want the monitor's rollback from v3 to v2", last)
	}
	waitFor(t, "v2 on both scorers after the rollback", 30*time.Second, serving(2))
}
