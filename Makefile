# modelops — see README.md. `make run` and `make test` are the two commands a
# newcomer needs; everything else is here for the people who work on it.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)
ORT_LIB  := .cache/onnxruntime/libonnxruntime.so.1
DATA     ?= .data

VERSITYGW_VERSION := v1.8.0

.PHONY: all ort s3 s3-run build run test test-short lint fmt vet model bench fuzz clean

all: build

## ort: fetch the ONNX Runtime 1.30.0 shared library into .cache/ (checked by sha256)
ort: $(ORT_LIB)

$(ORT_LIB): scripts/fetch-ort.sh
	bash scripts/fetch-ort.sh

## s3: install the Versity S3 Gateway the S3 tests start (into $(go env GOPATH)/bin)
s3:
	@command -v versitygw >/dev/null 2>&1 || [ -x "$$($(GO) env GOPATH)/bin/versitygw" ] || \
	  (echo "s3: go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION) (a few minutes the first time)"; \
	   $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION))

## s3-run: a local S3 gateway on 127.0.0.1:7070 over .data/s3 (bucket "models"), for trying --store s3://
s3-run: s3
	mkdir -p .data/s3/models
	AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-modelops} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-modelops-secret} \
	  sh -c 'exec "$$(command -v versitygw || echo $$($(GO) env GOPATH)/bin/versitygw)" --access "$$AWS_ACCESS_KEY_ID" --secret "$$AWS_SECRET_ACCESS_KEY" --port 127.0.0.1:7070 posix .data/s3'

## build: bin/modelctl and bin/scorer
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/modelctl ./cmd/modelctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/scorer ./cmd/scorer

## run: control plane + one scorer on the embedded default, with the shipped model promoted
run: ort build
	DATA=$(DATA) bash scripts/run.sh

## test: the whole suite with the race detector, then each fuzz target briefly; exactly what CI runs
test: ort s3 lint
	$(GO) test -race -count=1 -timeout 30m ./...
	# RSS bounds, which the race detector's shadow memory would blur, once without it
	$(GO) test -count=1 -run 'TestDeclaredLengthsReserveNothing' ./internal/scorerapi/
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

FUZZTIME ?= 10m
FUZZ_TARGETS := FuzzInspect:./internal/artifact FuzzParseCard:./internal/artifact FuzzNames:./internal/registry FuzzScoreRequest:./internal/scorerapi FuzzOIPData:./internal/scorerapi FuzzFP32Binary:./internal/scorerapi FuzzOIPHeader:./internal/scorerapi FuzzOIPAnswer:./internal/scorerapi FuzzScoreResponse:./internal/scorerapi FuzzBatch:./internal/predlog FuzzInferRequestCodec:./internal/scorerapi

## fuzz: run every fuzz target for FUZZTIME (default 10m each)
fuzz: ort
	@set -e; for t in $(FUZZ_TARGETS); do \
	  name=$${t%%:*}; pkg=$${t#*:}; echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## test-short: the quick subset
test-short: ort s3
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

## bench: CPU cost of the scorer against its baselines (raw onnxruntime_go loop, null-model handlers), hot swap, rollback, monitoring, training
bench: ort build
	$(GO) run ./cmd/modelbench -scorer $(BIN)/scorer -modelctl $(BIN)/modelctl
	$(GO) run ./cmd/modelbench -modelctl $(BIN)/modelctl -fleet 1000
	$(GO) test -run '^$$' -bench . -count=1 ./internal/monitor/
	$(GO) test -run '^$$' -bench . -count=1 ./internal/predlog/logship/
	$(GO) test -run '^$$' -bench . -benchtime 1x -count=1 ./internal/trainer/

clean:
	rm -rf $(BIN) $(DATA)
