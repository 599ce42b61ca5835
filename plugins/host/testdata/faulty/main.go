// Command faulty is a misbehaving attention plugin for the host's fault
// tests. Its behaviour follows the name it is run under (copies of one
// binary, so the tests link it once):
//
//	crash       Describe and Prepare work; Attend kills the process with a panic
//	hang        Prepare never answers
//	garbage     Attend answers with three bytes instead of the output
//	gibberish   writes nonsense instead of the go-plugin handshake
//	badproto    serves protocol version 2 only
//	exitearly   exits with status 3 before the handshake
//	misnamed    describes itself as "someone-else"
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/sdk"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

func main() {
	mode := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	switch mode {
	case "gibberish":
		fmt.Println("hello, I am not a plugin")
		time.Sleep(time.Minute)
		return
	case "exitearly":
		fmt.Fprintln(os.Stderr, "faulty: giving up before the handshake")
		os.Exit(3)
	case "garbage", "badproto":
		version := sdk.ProtocolVersion
		if mode == "badproto" {
			version = 2
		}
		hs := sdk.Handshake
		hs.ProtocolVersion = uint(version)
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{version: {"attention": &rawPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return
	}
	name := mode
	if mode == "misnamed" {
		name = "someone-else"
	}
	sdk.Serve(&sdk.Attention{
		Info: sdk.Info{Name: name, Version: "0.0.1", Capabilities: sdk.Capabilities{DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu"}}},
		Prepare: func(ctx context.Context, _ *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			if mode == "hang" {
				select {} // ignores ctx on purpose
			}
			return &sdk.AttentionPlan{Reference: crasher{}}, nil
		},
	})
}

// crasher kills the process from a goroutine, which no recover can catch.
type crasher struct{}

func (crasher) Name() string { return "crash" }

func (crasher) Attend(context.Context, *attention.Problem) error {
	go func() { panic("simulated crash in Attend") }()
	time.Sleep(time.Minute)
	return nil
}

// rawPlugin serves the attention service directly, bypassing the SDK's
// checks, to answer garbage.
type rawPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (rawPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterAttentionServer(s, rawServer{})
	return nil
}

func (rawPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("server only")
}

type rawServer struct {
	pluginpb.UnimplementedAttentionServer
}

func (rawServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return &pluginpb.Description{
		Name: "garbage", Kind: pluginpb.Kind_KIND_ATTENTION, Version: "0", ProtocolVersion: sdk.ProtocolVersion,
		Capabilities: &pluginpb.Capabilities{Dtypes: []string{"f32"}, Gqa: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu"}},
	}, nil
}

func (rawServer) Prepare(context.Context, *pluginpb.PrepareRequest) (*pluginpb.Preparation, error) {
	return &pluginpb.Preparation{PlanId: "p"}, nil
}

func (rawServer) Attend(context.Context, *pluginpb.AttendRequest) (*pluginpb.AttendResponse, error) {
	return &pluginpb.AttendResponse{Out: []byte{1, 2, 3}}, nil
}
