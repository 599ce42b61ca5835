# longctx — see README.md. `make run` builds everything and runs the default
# job; `make test` is the suite CI runs.
GO       ?= go
BIN      := bin
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
FUZZTIME ?= 20s

EVALUATORS := squad hotpotqa longbench_qa_f1 rouge rouge_stem needle
PLUGINS  := attention/eager attention/flash attention/flex kvcache/full kvcache/l2 kvcache/streaming kvcache/random

.PHONY: all build harness plugins evaluators run test vet fmt-check fixtures fuzz clean

all: build

build: harness plugins evaluators

harness:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/harness ./harness

# The built-in scorers are WASI modules; the harness finds them by name in
# bin/evaluators beside itself.
evaluators:
	@mkdir -p $(BIN)/evaluators
	@for e in $(EVALUATORS); do GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/evaluators/$$e.wasm ./evaluators/builtin/$$e || exit 1; done

# Each built-in plugin is built into its folder beside a plugin.json whose
# sha256 the harness checks before starting it.
plugins:
	@for p in $(PLUGINS); do $(GO) build -trimpath -ldflags '-s -w' -o plugins/$$p/$$(basename $$p) ./plugins/$$p/cmd || exit 1; done
	$(GO) run ./tools/plugin-manifest $(addprefix plugins/,$(PLUGINS))

# The default job: the embedded default sweep on the CPU engine (the
# synthetic tiny model; eager vs flash attention, with and without L2
# compression; speed and needle tasks over three context lengths), then the
# report. Finished cells are kept, so a second `make run` only redraws.
run: build
	$(BIN)/harness sweep --default --out results/default
	$(BIN)/harness report results/default --out report/default
	@echo "results: results/default/*.parquet   report: report/default/index.html"

fixtures:
	./tools/fetch-tokenizers.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: fixtures vet fmt-check
	$(GO) test -count=1 $(PKGS)

# Short runs of every fuzz target (go test runs their seed corpora already).
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
	rm -f $(foreach p,$(PLUGINS),plugins/$(p)/$(notdir $(p)) plugins/$(p)/plugin.json)
