package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"
)

// grpcRun is `modelbench -grpc-only`: the gRPC contenders alone, a shorter
// run for working on the gRPC path. The scorer (following a control plane, as
// in the full run) and the null gRPC server take 256-row and single-row
// ModelInfer calls in turns with the raw loops; then perf profiles the
// scorer on 256-row calls unless -no-profile.
func (b *bench) grpcRun() error {
	o := b.o
	cp, err := b.controlPlane("control-plane")
	if err != nil {
		return err
	}
	if err := b.push(cp, "calling-score", o.model, true); err != nil {
		return err
	}
	if err := b.promote(cp, "calling-score", 1); err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	sc, err := b.scorer(cp, "scorer", "--grpc-listen", grpcAddr)
	if err != nil {
		return err
	}
	null, nullAddr, err := startNullGRPC(b.dir)
	if err != nil {
		return err
	}
	b.keep(null)
	raw1, err := startRawLoop(b.dir, o.lib, o.model, 1)
	if err != nil {
		return err
	}
	b.keep(raw1.proc)
	raw256, err := startRawLoop(b.dir, o.lib, o.model, 256)
	if err != nil {
		return err
	}
	b.keep(raw256.proc)

	many := []*contender{
		{name: "scorer, OIP v2 gRPC raw contents", p: sc, grpcAddr: grpcAddr, grpcBody: grpcRequest(256)},
		{name: "null gRPC server, the scorer's transport options", p: null, grpcAddr: nullAddr, grpcBody: grpcRequest(256)},
	}
	singles := []*contender{
		{name: "scorer, OIP v2 gRPC raw contents", p: sc, grpcAddr: grpcAddr, grpcBody: grpcRequest(1)},
		{name: "null gRPC server, the scorer's transport options", p: null, grpcAddr: nullAddr, grpcBody: grpcRequest(1)},
	}
	for _, c := range append(append([]*contender{}, many...), singles...) { // warm up
		if _, err := loadAny(context.Background(), c.spec(loadSpec{Conns: o.conns256, Duration: 500 * time.Millisecond})); err != nil {
			return err
		}
	}
	window := o.duration / time.Duration(o.rounds)
	rawMany, err := b.rounds(many, loadSpec{Conns: o.conns256, Duration: window}, 256, raw256)
	if err != nil {
		return err
	}
	rawOne, err := b.rounds(singles, loadSpec{Conns: o.conns, Duration: window}, 1, raw1)
	if err != nil {
		return err
	}
	var prof *profile
	if !o.noProfile {
		if prof, err = b.profileScorer(sc, many[0].spec(loadSpec{Conns: o.conns256, Duration: 3 * time.Second})); err != nil {
			fmt.Fprintln(os.Stderr, "modelbench: no profile:", err)
		}
	}
	b.stopAll()

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "256 rows (closed loop, %d calls at once)\tCPU/request\tCPU/row\tin kernel\trequests/s\tp99\tfailed\t\n", o.conns256)
	for _, c := range many {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.0f\t%s\t%d\t\n", c.name, us(c.cost.perRequest()), us(c.cost.perRow()), pct(c.cost.sysShare()), c.res.rps(), us(c.res.quantile(.99)), c.res.Failed)
	}
	fmt.Fprintf(tw, "  raw onnxruntime_go loop, batch 256\t%s\t%s\t%s\t\t\t\t\n", us(rawMany.perRequest()), us(rawMany.perRow()), pct(rawMany.sysShare()))
	fmt.Fprintf(tw, "single row (closed loop, %d calls at once)\t\t\t\t\t\t\t\n", o.conns)
	for _, c := range singles {
		fmt.Fprintf(tw, "  %s\t%s\t\t%s\t%.0f\t%s\t%d\t\n", c.name, us(c.cost.perRequest()), pct(c.cost.sysShare()), c.res.rps(), us(c.res.quantile(.99)), c.res.Failed)
	}
	fmt.Fprintf(tw, "  raw onnxruntime_go loop, batch 1\t%s\t\t%s\t\t\t\t\n", us(rawOne.perRequest()), pct(rawOne.sysShare()))
	tw.Flush()
	fmt.Printf("256 rows, gRPC raw contents: raw loop's CPU/row ÷ scorer's: %s\n", ratio(rawMany.perRow(), many[0].cost.perRow(), 0.60).got)
	printGRPCFloor(rawMany, many[0].cost, many[1].cost, singles[0].cost, singles[1].cost)
	if prof != nil {
		prof.printFor("OIP v2 gRPC raw contents", many[0].cost, rawMany.perRequest())
	}
	return nil
}
