// Command streaming serves the streaming KV-cache plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/kvcache/streaming"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(streaming.Plugin()) }
