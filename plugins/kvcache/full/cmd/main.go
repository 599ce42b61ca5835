// Command full serves the full KV-cache plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/kvcache/full"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(full.Plugin()) }
