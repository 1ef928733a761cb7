package main

import (
	"context"
	"strings"
	"testing"
)

func TestMissingRuntimeStopsWithOneClearLine(t *testing.T) {
	err := run(context.Background(), []string{"--onnxruntime-lib", "/nonexistent/libonnxruntime.so", "--listen", "127.0.0.1:0"})
	if err == nil {
		t.Fatal("scorer started without ONNX Runtime")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "make ort") || !strings.Contains(msg, "ONNXRUNTIME_LIB") {
		t.Fatalf("error %q: want one line naming `make ort` and ONNXRUNTIME_LIB", msg)
	}
}

func TestRejectsStrayArguments(t *testing.T) {
	if err := run(context.Background(), []string{"extra"}); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("err = %v", err)
	}
}
