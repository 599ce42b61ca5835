// bf16 for the host emulation: conversions only.
#pragma once
#include "emu_cuda.h"
struct __nv_bfloat16 { unsigned short x; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return {(unsigned short)((b >> 16) | 0x40)};
    b += 0x7fffu + ((b >> 16) & 1u);
    return {(unsigned short)(b >> 16)};
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }
