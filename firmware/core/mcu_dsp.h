/* The DSP-extension instructions the SIMD kernels use.  On a core that has them
 * (__ARM_FEATURE_DSP: Cortex-M4, M7, M33, M55) they come from arm_acle.h, one
 * instruction each; elsewhere (the host tests of mcu_conv_dsp.c) plain C models them. */
#ifndef MCU_DSP_H
#define MCU_DSP_H
#include <stdint.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
/* acc + a.lo * b.lo + a.hi * b.hi, signed 16-bit halves */
#define mcu_smlad(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
/* bytes 0 and 2 of x, zero-extended into the two halves */
#define mcu_uxtb16(x) __uxtb16(x)
/* bytes 1 and 3 of x: UXTB16 with its built-in ROR #8 (GCC 12 does not fold a rotate into it) */
static inline uint32_t mcu_uxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
static inline int32_t mcu_smlad(uint32_t a, uint32_t b, int32_t acc) {
    return acc + (int16_t)(a & 0xffff) * (int16_t)(b & 0xffff) + (int16_t)(a >> 16) * (int16_t)(b >> 16);
}
static inline uint32_t mcu_uxtb16(uint32_t x) { return x & 0x00ff00ffu; }
static inline uint32_t mcu_uxtb16_ror8(uint32_t x) { return (x >> 8) & 0x00ff00ffu; }
#endif

/* An unaligned little-endian word (LDR allows unaligned addresses on Armv7-M/v8-M Mainline). */
static inline uint32_t mcu_load32(const uint8_t *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
#endif
