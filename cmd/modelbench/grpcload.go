package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	pb "github.com/modelops/modelops/internal/scorerapi/inferencepb"
)

// The scorer's gRPC API under load: a loadSpec whose URL is grpc://ADDR sends
// Body, a marshalled ModelInferRequest, as ModelInfer calls from Conns
// goroutines over a few HTTP/2 connections, as Triton's clients do.

const grpcScheme = "grpc://"

// grpcRequest is a ModelInferRequest of rows calling-score rows as
// raw_input_contents, marshalled.
func grpcRequest(rows int) []byte {
	raw := make([]byte, 0, rows*39*4)
	for i := 0; i < rows; i++ {
		f := features(i)
		if rows == 1 {
			f = features(153) // the row /v1/score's single body carries
		}
		for _, v := range f {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}
	b, err := proto.Marshal(&pb.ModelInferRequest{ModelName: "calling-score",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{int64(rows), 39}}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		panic(err)
	}
	return b
}

// loadAny runs spec over HTTP/1.1 or, for a grpc:// URL, over gRPC.
func loadAny(ctx context.Context, spec loadSpec) (loadResult, error) {
	if strings.HasPrefix(spec.URL, grpcScheme) {
		return grpcLoad(ctx, spec)
	}
	return load(ctx, spec)
}

// grpcLoad is load for the gRPC API (closed loop; Rate paces it as load does).
func grpcLoad(ctx context.Context, spec loadSpec) (loadResult, error) {
	var req pb.ModelInferRequest
	if err := proto.Unmarshal(spec.Body, &req); err != nil {
		return loadResult{}, err
	}
	conns := make([]*grpc.ClientConn, max(1, min(4, spec.Conns)))
	for i := range conns {
		c, err := grpc.NewClient(strings.TrimPrefix(spec.URL, grpcScheme), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	// The window ends by cancelling, not by a deadline: a deadline would travel
	// with every call (grpc-timeout), and the server would end calls at it a
	// moment before this side's context says so.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	time.AfterFunc(spec.Duration, cancel)
	start := time.Now()
	results := make([]loadResult, spec.Conns)
	var wg sync.WaitGroup
	for k := range spec.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := pb.NewGRPCInferenceServiceClient(conns[k%len(conns)])
			res := &results[k]
			for i := 0; ; i++ {
				due := time.Now()
				if spec.Rate > 0 {
					// Request i of this goroutine is due at its share of the rate.
					due = start.Add(time.Duration(float64(i*spec.Conns+k) / spec.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
						}
					}
				}
				if ctx.Err() != nil {
					return
				}
				resp, err := cl.ModelInfer(ctx, &req)
				if ctx.Err() != nil {
					return // cut by the window's end: not counted
				}
				res.Requests++
				res.Latencies = append(res.Latencies, time.Since(due))
				res.Sent = append(res.Sent, due.UnixNano())
				switch {
				case err != nil:
					res.Failed++
					if res.FirstError == "" {
						res.FirstError = fmt.Sprintf("gRPC: %v", err)
					}
				case resp.GetParameters()["source"].GetStringParam() == "fallback":
					res.Fallbacks++
				}
			}
		}()
	}
	wg.Wait()
	out := merge(results...)
	out.Elapsed = time.Since(start)
	return out, nil
}
