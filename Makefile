# modelops — see README.md. `make run` and `make test` are the two commands a
# newcomer needs; everything else is here for the people who work on it.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)
ORT_LIB  := .cache/onnxruntime/libonnxruntime.so.1
DATA     ?= .data

.PHONY: all ort build run test test-short lint fmt vet model bench clean

all: build

## ort: fetch the ONNX Runtime 1.30.0 shared library into .cache/ (checked by sha256)
ort: $(ORT_LIB)

$(ORT_LIB): scripts/fetch-ort.sh
	bash scripts/fetch-ort.sh

## build: bin/modelctl and bin/scorer
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/modelctl ./cmd/modelctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/scorer ./cmd/scorer

## run: control plane + one scorer on the embedded default, with the shipped model promoted
run: ort build
	DATA=$(DATA) bash scripts/run.sh

## test: the whole suite with the race detector, exactly what CI runs
test: ort lint
	$(GO) test -race -count=1 -timeout 20m ./...

## test-short: the quick subset
test-short: ort
	$(GO) test -short -count=1 ./...

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## model: regenerate models/calling_score from its seed
model: ort
	$(GO) run ./cmd/modelctl train --seed 42 --samples 10000 --out models/calling_score

## bench: benchmarks with baselines measured in the same run
bench: ort
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

clean:
	rm -rf $(BIN) $(DATA)
