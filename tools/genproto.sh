#!/usr/bin/env bash
# Regenerates plugins/sdk/pluginpb from
# plugins/sdk/proto/longctx/plugin/v1/plugin.proto. The
# generated files are committed, so building and CI need no protoc; run this
# after editing the .proto. Needs protoc (Debian: protobuf-compiler) and the
# generators at the versions matching go.mod's protobuf and grpc:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
# The import path longctx/plugin/v1/plugin.proto is the file's name in the
# global protobuf registry, so it must be unique among everything linked.
protoc -I plugins/sdk/proto \
  --go_out=. --go_opt=module=github.com/longctx/longctx \
  --go-grpc_out=. --go-grpc_opt=module=github.com/longctx/longctx \
  longctx/plugin/v1/plugin.proto
