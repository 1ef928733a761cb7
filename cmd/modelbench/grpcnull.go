package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelops/modelops/internal/scorerapi"
	pb "github.com/modelops/modelops/internal/scorerapi/inferencepb"
)

// The null gRPC server is the floor under the scorer's gRPC cost: grpc-go on
// the scorer's own transport options (scorerapi.TransportOptions), the same
// generated service, and a ModelInfer that reads raw_input_contents, checks
// its size against the input's shape and answers a constant of the size the
// scorer answers (one FP32 score a row, the same parameters). What it spends
// a request is what grpc-go, protobuf and the kernel take before any scoring.

// nullGRPCMaxMessage is the scorer's default largest message (4,096 rows of
// 4 KiB and 64 KiB of slack), so both servers take the same.
const nullGRPCMaxMessage = 4096*scorerapi.DefaultGRPCRowBytes + 64<<10

type nullInference struct {
	pb.UnimplementedGRPCInferenceServiceServer
	// zeros is the largest constant answer; each answer is a prefix of it.
	zeros []byte
}

func (s *nullInference) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (s *nullInference) ModelInfer(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	ins, raw := req.GetInputs(), req.GetRawInputContents()
	if len(ins) != 1 || len(raw) != 1 {
		return nil, status.Error(codes.InvalidArgument, "want one input in raw_input_contents")
	}
	shape := ins[0].GetShape()
	if len(shape) != 2 || shape[0] < 1 || shape[0] > 4096 || int64(len(raw[0])) != 4*shape[0]*shape[1] {
		return nil, status.Errorf(codes.InvalidArgument, "input shape %v and %d bytes of raw contents disagree", shape, len(raw[0]))
	}
	rows := shape[0]
	return &pb.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId(),
		Parameters: map[string]*pb.InferParameter{
			"arm":        {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "champion"}},
			"source":     {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "model"}},
			"request_id": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "0000000000000000"}},
		},
		Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "output", Datatype: "FP32", Shape: []int64{rows, 1}}},
		RawOutputContents: [][]byte{s.zeros[:4*rows]},
	}, nil
}

// serveNullGRPC serves the null gRPC server on addr until ctx ends.
func serveNullGRPC(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(scorerapi.TransportOptions(nullGRPCMaxMessage)...)
	pb.RegisterGRPCInferenceServiceServer(srv, &nullInference{zeros: make([]byte, 4*4096)})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		srv.GracefulStop()
		return nil
	}
}

// runNullGRPCChild is the child's main: args holds the listen address.
func runNullGRPCChild(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want the listen address")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return serveNullGRPC(ctx, args[0])
}

// startNullGRPC starts the null gRPC server child and waits until it answers
// ServerLive; it returns the child and its address.
func startNullGRPC(dir string) (*proc, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(dir, "null-grpc", exe, []string{"-child", "null-grpc", addr}, nil, false)
	if err != nil {
		return nil, "", err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.stop()
		return nil, "", err
	}
	defer conn.Close()
	cl := pb.NewGRPCInferenceServiceClient(conn)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.ServerLive(ctx, &pb.ServerLiveRequest{})
		cancel()
		if err == nil {
			return p, addr, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("null gRPC server not live after 30 s: %v; its log:\n%s", err, p.logTail())
		}
	}
}

// printGRPCFloor says how much of the gRPC goal's budget the null gRPC server
// takes alone: at batch 256 the scorer may spend raw ÷ 0.60 a row, and
// grpc-go, protobuf and the kernel take the null server's cost of it before
// ONNX Runtime's raw cost is added.
func printGRPCFloor(raw256, scorer256, null256, scorer1, null1 cost) {
	if raw256.rows == 0 || null256.rows == 0 || scorer256.rows == 0 {
		return
	}
	budget := time.Duration(float64(raw256.perRow()) / 0.60)
	floor := null256.perRow() + raw256.perRow()
	fmt.Printf("\ngRPC floor: the null gRPC server costs %s a 256-row request (%s a row; %s in kernel), %s a single-row one (the scorer: %s and %s).\n",
		us(null256.perRequest()), us(null256.perRow()), pct(null256.sysShare()), us(null1.perRequest()), us(scorer256.perRequest()), us(scorer1.perRequest()))
	above := "none measurable (the scorer costs less than null + raw loop: noise)"
	if d := scorer256.perRequest() - null256.perRequest() - raw256.perRequest(); d > 0 {
		above = us(d) + " a request"
	}
	fmt.Printf("  budget at goal 0.60: %s a row; the null server takes %.0f%% of it, and with the raw loop's %s a row the floor is %s a row: best ratio on this stack %.2f; the scorer's cost above that floor: %s.\n",
		us(budget), 100*float64(null256.perRow())/float64(budget), us(raw256.perRow()), us(floor), float64(raw256.perRow())/float64(floor), above)
}
