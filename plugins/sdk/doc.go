// Package sdk is what a longctx plugin author imports: the plugin kinds,
// their option schemas, the kernels a plugin hands the engine, and Serve,
// which runs a plugin as a hashicorp/go-plugin gRPC subprocess. It also
// holds the host side of the wire (AttentionClient, KVClient), so that one
// package owns the protocol's encoding in both directions.
//
// A plugin is a main package around one Serve call:
//
//	func main() {
//		sdk.Serve(&sdk.Attention{
//			Info:    sdk.Info{Name: "mine", Version: "0.1.0", Capabilities: ...},
//			Options: []sdk.Option{{Name: "block", Type: sdk.Int, Default: "64"}},
//			Prepare: func(ctx context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
//				return &sdk.AttentionPlan{Reference: myBackend{block: req.Options.Int("block")}}, nil
//			},
//		})
//	}
//
// See plugins/README.md for the whole story.
package sdk

//go:generate ../../tools/genproto.sh
