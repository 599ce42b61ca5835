package sdk

import (
	"fmt"

	"github.com/hashicorp/go-plugin"

	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// ProtocolVersion is the plugin protocol this SDK speaks. It is negotiated
// in the go-plugin handshake; a host and a plugin with no version in common
// refuse to talk.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake shared by the harness and plugins.
// The magic cookie only stops a plugin being run by hand by mistake; it is
// no security measure (the manifest checksum is).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "LONGCTX_PLUGIN",
	MagicCookieValue: "attention-and-kv-cache",
}

// Kind is the kind of a plugin.
type Kind int

// Plugin kinds.
const (
	KindAttention Kind = iota + 1
	KindKVCache
)

// Kinds lists every kind, in the order commands show them.
var Kinds = []Kind{KindAttention, KindKVCache}

// String returns "attention" or "kvcache": the manifest's kind field and
// the folder name under plugins/.
func (k Kind) String() string {
	switch k {
	case KindAttention:
		return "attention"
	case KindKVCache:
		return "kvcache"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind parses "attention" or "kvcache".
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("plugin kind %q: want attention or kvcache", s)
}

func (k Kind) valid() bool { return k == KindAttention || k == KindKVCache }

func (k Kind) pb() pluginpb.Kind {
	switch k {
	case KindAttention:
		return pluginpb.Kind_KIND_ATTENTION
	case KindKVCache:
		return pluginpb.Kind_KIND_KVCACHE
	}
	return pluginpb.Kind_KIND_UNSPECIFIED
}

func kindFromPB(k pluginpb.Kind) Kind {
	switch k {
	case pluginpb.Kind_KIND_ATTENTION:
		return KindAttention
	case pluginpb.Kind_KIND_KVCACHE:
		return KindKVCache
	}
	return 0
}
