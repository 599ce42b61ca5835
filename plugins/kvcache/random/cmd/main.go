// Command random serves the random KV-cache plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/kvcache/random"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(random.Plugin()) }
