// Package abi embeds the kernel ABI headers (common.h, attention.h,
// kv_score.h, launch.h): the parameter structs of the kernel roles that
// plugins deliver and the engine launches. The engine hands them to NVRTC
// as "longctx/abi/<name>.h"; plugin authors read them as the contract.
package abi

import "embed"

// Headers holds the *.h files.
//
//go:embed *.h
var Headers embed.FS

// Version is LONGCTX_ABI_VERSION in common.h.
const Version = 4
