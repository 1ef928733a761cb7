// Package inferencepb is the Open Inference Protocol v2 over gRPC
// (inference.GRPCInferenceService), generated from KServe's grpc_predict_v2.proto
// (docs/predict-api/v2 of github.com/kserve/kserve v0.14.0, Apache-2.0), the same
// definition Triton's and KServe's gRPC clients are generated from.
//
// To regenerate, with protoc 3.21 (Debian's protobuf-compiler), protoc-gen-go v1.36.12
// and protoc-gen-go-grpc v1.5.1 on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
//	go generate ./internal/scorerapi/inferencepb
package inferencepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative grpc_predict_v2.proto
