// Command l2 serves the l2 KV-cache plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/kvcache/l2"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(l2.Plugin()) }
