/* The Helium (MVE) intrinsics the Helium kernels use.  On a core that has them
 * (__ARM_FEATURE_MVE: Cortex-M55, M85) they come from arm_mve.h, one instruction each;
 * elsewhere (the host tests of mcu_conv_mve.c and mcu_jpeg.c) plain C models them, lane by lane. */
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
/* --- the JPEG encoder's (mcu_jpeg.c): 32-bit lanes, widening loads, gathers, scatters -- */
typedef struct { uint32_t v[4]; } uint32x4_t;
typedef uint16_t mve_pred16_t;       /* 4 predicate bits per 32-bit lane */

static inline int32x4_t vreinterpretq_s32_u32(uint32x4_t a) {
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (int32_t)a.v[i];
    return r;
}
static inline uint32x4_t vreinterpretq_u32_s32(int32x4_t a) {
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (uint32_t)a.v[i];
    return r;
}
static inline uint32x4_t vldrwq_u32(const uint32_t *p) {
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = p[i];
    return r;
}
static inline int32x4_t vldrhq_s32(const int16_t *p) {
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = p[i];
    return r;
}
/* VSTRH.32: the low halfword of each lane */
static inline void vstrhq_s32(int16_t *p, int32x4_t x) {
    for (int i = 0; i < 4; i++) p[i] = (int16_t)x.v[i];
}
static inline void vstrwq_s32(int32_t *p, int32x4_t x) {
    for (int i = 0; i < 4; i++) p[i] = x.v[i];
}
static inline uint32x4_t vldrbq_gather_offset_u32(const uint8_t *base, uint32x4_t off) {
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = base[off.v[i]];
    return r;
}
static inline uint32x4_t vldrhq_gather_shifted_offset_u32(const uint16_t *base, uint32x4_t off) {
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = base[off.v[i]];
    return r;
}
static inline int32x4_t vldrwq_gather_shifted_offset_s32(const int32_t *base, uint32x4_t off) {
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = base[off.v[i]];
    return r;
}
static inline void vstrbq_scatter_offset_s32(int8_t *base, uint32x4_t off, int32x4_t x) {
    for (int i = 0; i < 4; i++) base[off.v[i]] = (int8_t)x.v[i];
}
static inline void vstrwq_scatter_shifted_offset_s32(int32_t *base, uint32x4_t off, int32x4_t x) {
    for (int i = 0; i < 4; i++) base[off.v[i]] = x.v[i];
}
static inline int32x4_t vsubq_s32(int32x4_t a, int32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] -= b.v[i];
    return a;
}
static inline int32x4_t vaddq_n_s32(int32x4_t a, int32_t b) {
    for (int i = 0; i < 4; i++) a.v[i] += b;
    return a;
}
static inline int32x4_t vsubq_n_s32(int32x4_t a, int32_t b) {
    for (int i = 0; i < 4; i++) a.v[i] -= b;
    return a;
}
static inline int32x4_t vmulq_n_s32(int32x4_t a, int32_t b) {
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] * (uint32_t)b);
    return a;
}
/* VMLA: add + m1 * m2 (scalar) */
static inline int32x4_t vmlaq_n_s32(int32x4_t add, int32x4_t m1, int32_t m2) {
    for (int i = 0; i < 4; i++) add.v[i] = (int32_t)((uint32_t)add.v[i] + (uint32_t)m1.v[i] * (uint32_t)m2);
    return add;
}
static inline uint32x4_t vmulq_u32(uint32x4_t a, uint32x4_t b) {
    for (int i = 0; i < 4; i++) a.v[i] *= b.v[i];
    return a;
}
static inline uint32x4_t vaddq_n_u32(uint32x4_t a, uint32_t b) {
    for (int i = 0; i < 4; i++) a.v[i] += b;
    return a;
}
static inline uint32x4_t vshrq_n_u32(uint32x4_t a, int n) {
    for (int i = 0; i < 4; i++) a.v[i] >>= n;
    return a;
}
static inline int32x4_t vabsq_s32(int32x4_t a) {
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] < 0 ? -a.v[i] : a.v[i];
    return a;
}
static inline int32x4_t vnegq_s32(int32x4_t a) {
    for (int i = 0; i < 4; i++) a.v[i] = -a.v[i];
    return a;
}
static inline mve_pred16_t vcmpltq_n_s32(int32x4_t a, int32_t b) {
    mve_pred16_t p = 0;
    for (int i = 0; i < 4; i++)
        if (a.v[i] < b) p |= (mve_pred16_t)(0xF << (4 * i));
    return p;
}
/* VPSEL: a where the lane's predicate is set, else b */
static inline int32x4_t vpselq_s32(int32x4_t a, int32x4_t b, mve_pred16_t p) {
    for (int i = 0; i < 4; i++) a.v[i] = (p >> (4 * i)) & 1 ? a.v[i] : b.v[i];
    return a;
}
#endif
#endif

