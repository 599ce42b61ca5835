// Command flash serves the FlashAttention-2 plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/attention/flash"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(flash.Plugin()) }
