// Command eager serves the eager attention plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/attention/eager"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(eager.Plugin()) }
