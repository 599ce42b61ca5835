// Command flex serves the flex attention plugin; the harness starts it.
package main

import (
	"github.com/longctx/longctx/plugins/attention/flex"
	"github.com/longctx/longctx/plugins/sdk"
)

func main() { sdk.Serve(flex.Plugin()) }
