/* The Helium (MVE) intrinsics the Helium kernels use.  On a core that has them
 * (__ARM_FEATURE_MVE: Cortex-M55, M85) they come from arm_mve.h, one instruction each;
 * elsewhere (the host tests of mcu_conv_mve.c) plain C models them, lane by lane. */
#ifndef MCU_MVE_H
#define MCU_MVE_H
#include <stdint.h>

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
#else
typedef struct { int8_t v[16]; } int8x16_t;
typedef struct { int32_t v[4]; } int32x4_t;

static inline int8x16_t vldrbq_s8(const int8_t *p) {
    int8x16_t r;
    for (int i = 0; i < 16; i++) r.v[i] = p[i];
    return r;
}
static inline void vstrbq_s8(int8_t *p, int8x16_t x) {
    for (int i = 0; i < 16; i++) p[i] = x.v[i];
}
static inline int8x16_t vdupq_n_s8(int8_t x) {
    int8x16_t r;
    for (int i = 0; i < 16; i++) r.v[i] = x;
    return r;
}
static inline int8x16_t veorq_s8(int8x16_t a, int8x16_t b) {
    for (int i = 0; i < 16; i++) a.v[i] = (int8_t)(a.v[i] ^ b.v[i]);
    return a;
}
/* VMLADAVA.S8: acc + the sum of the 16 lane products */
static inline int32_t vmladavaq_s8(int32_t acc, int8x16_t a, int8x16_t b) {
    for (int i = 0; i < 16; i++) acc += a.v[i] * b.v[i];
    return acc;
}
static inline int32x4_t vldrwq_s32(const int32_t *p) {
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = p[i];
    return r;
}
static inline int32x4_t vdupq_n_s32(int32_t x) {
    int32x4_t r = {{x, x, x, x}};
    return r;
}
/* VSTRB.32: the low byte of each lane */
static inline void vstrbq_s32(int8_t *p, int32x4_t x) {
    for (int i = 0; i < 4; i++) p[i] = (int8_t)x.v[i];
}
/* VSHL (register), left shifts only here: the lane wraps as the core's does */
static inline int32x4_t vshlq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] << b.v[i]);
    return a;
}
/* VQRDMULH: (2ab + 2^31) >> 32, saturated (a = b = INT32_MIN never occurs here) */
static inline int32x4_t vqrdmulhq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((2 * (int64_t)a.v[i] * b.v[i] + (1ll << 31)) >> 32);
    return a;
}
/* VRSHL with a right shift (b <= 0): (a + 2^(n-1)) >> n, without intermediate overflow */
static inline int32x4_t vrshlq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) {
        int n = -b.v[i];
        a.v[i] = n ? (int32_t)(((int64_t)a.v[i] + (1ll << (n - 1))) >> n) : a.v[i];
    }
    return a;
}
static inline int32x4_t vshrq_n_s32(int32x4_t a, int n) {
    for (int i = 0; i < 4; i++) a.v[i] >>= n;
    return a;
}
static inline int32x4_t vandq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] &= b.v[i];
    return a;
}
static inline int32x4_t vaddq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] += b.v[i];
    return a;
}
static inline int32x4_t vmaxq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
}
static inline int32x4_t vminq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return a;
}
#endif
#endif
