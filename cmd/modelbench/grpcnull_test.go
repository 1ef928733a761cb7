package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/modelops/modelops/internal/scorerapi/inferencepb"
)

func TestNullGRPCServerAnswersTheScorersSize(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveNullGRPC(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveNullGRPC: %v", err)
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := pb.NewGRPCInferenceServiceClient(conn)
	call, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	for _, rows := range []int{1, 256} {
		var req pb.ModelInferRequest
		if err := proto.Unmarshal(grpcRequest(rows), &req); err != nil {
			t.Fatal(err)
		}
		resp, err := cl.ModelInfer(call, &req, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		if got := resp.GetRawOutputContents(); len(got) != 1 || len(got[0]) != 4*rows {
			t.Errorf("%d rows: raw output of %d tensors, first %d bytes; want one of %d", rows, len(got), len(got[0]), 4*rows)
		}
		if s := resp.GetOutputs()[0].GetShape(); len(s) != 2 || s[0] != int64(rows) || s[1] != 1 {
			t.Errorf("%d rows: output shape %v", rows, s)
		}
		if resp.GetParameters()["source"].GetStringParam() != "model" {
			t.Errorf("%d rows: parameters %v, want source model as the scorer says", rows, resp.GetParameters())
		}
		req.RawInputContents[0] = req.RawInputContents[0][4:]
		if _, err := cl.ModelInfer(call, &req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%d rows, raw contents 4 bytes short: %v, want INVALID_ARGUMENT", rows, err)
		}
	}
}
