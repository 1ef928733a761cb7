// Package onnx holds the ONNX protobuf types (ModelProto, GraphProto, TensorProto…),
// generated from the ONNX project's own onnx.proto3 (IR version 8, Apache-2.0), so
// that reading signatures and writing models needs nothing but the protobuf runtime.
//
// To regenerate, with protoc 3.21 and protoc-gen-go v1.36.12 on PATH
// (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12):
//
//	go generate ./internal/onnx
package onnx

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto3
