# The two commands a newcomer needs are `make run` and `make test`.
# Everything else here is for contributors.

GO ?= go
PROTO_DIR := api/proto/queued/v1
PROTOS := $(wildcard $(PROTO_DIR)/*.proto)

.PHONY: run test generate check-generated bench bench-full build lint

## run: start queued (with a private PostgreSQL under ./.queued unless QUEUED_DATABASE_URL is set)
run:
	$(GO) run ./cmd/queued

## test: run every test against a real PostgreSQL (the local one, or a private cluster)
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

## build: build all binaries into ./bin
build:
	$(GO) build -o bin/ ./cmd/...

## generate: rebuild the Go code for the .proto files with protoc and the plugin versions pinned in go.mod
generate:
	protoc -I . -I /usr/include \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTOS)

## check-generated: fail when the committed generated code differs from what `make generate` produces
check-generated: generate
	@git diff --exit-code -- $(PROTO_DIR) || (echo "generated code is stale: run 'make generate' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- $(PROTO_DIR))" || (echo "generated files are not committed" >&2; git status --porcelain -- $(PROTO_DIR); exit 1)

## bench: run the benchmark suite, short version (a few minutes; docs/benchmarks.md)
bench:
	$(GO) run ./cmd/queuebench $(BENCHFLAGS)

## bench-full: the benchmark suite at BENCHMARKS.md's sizes (about 30 minutes)
bench-full:
	$(GO) run ./cmd/queuebench -full $(BENCHFLAGS)
