/* SIMD row kernels (see mcu_conv.h) in the style of CMSIS-NN: for two output pixels at
 * a time, the receptive fields are widened to int16 pairs once (im2col), then a 2x2
 * block of (output channel, pixel) accumulators takes two MACs per SMLAD.  The weights
 * come pre-widened and in the same pair order from the exporter (mcu_convN_wpairs,
 * codec/c_header.py: dsp_weight_pairs), so the inner loop is loads and SMLADs only:
 * 4 LDRD + 8 SMLAD per 16 MACs, written in assembly because the compiler's version
 * took 20 instructions for the same work. */
#include "mcu_conv.h"
#include "mcu_dsp.h"

#define K1 76     /* conv1: 7 rows x 10 pairs + 7 leftover bytes (3.5 pairs), padded to 4 */
#define K2 200    /* conv2: 5 rows x 80 bytes = 5 x 40 pairs */
#define K3 72     /* conv3: 3 rows x 48 bytes = 3 x 24 pairs */

/* im2col of two output pixels, the second right after the first (K pairs each), in
 * the scratch memory that video-mode coding uses once the convolutions are done */
#define col mcu_scratch

/* bytes [0, 4 * words) of src -> 2 * words pairs, in the exporter's order (0,2), (1,3) */
static inline __attribute__((always_inline)) void widen(const uint8_t *src, int words, uint32_t *dst) {
#pragma GCC unroll 20
    for (int q = 0; q < words; q++) {
        uint32_t w = mcu_load32(src + 4 * q);
        dst[2 * q] = mcu_uxtb16(w);
        dst[2 * q + 1] = mcu_uxtb16_ror8(w);
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* acc += (wa.c0, wa.c1, wb.c0, wb.c1) where wb = w + K and c1 = c + K; K pairs, K % 4 == 0 */
#define STEP(OFF)                                              \
    "ldrd %[x2], %[x3], [%[c], #" OFF "]\n\t"                  \
    "ldrd %[x0], %[x1], [%[c]], #8\n\t"                        \
    "ldrd %[y0], %[y1], [%[w], #" OFF "]\n\t"                  \
    "smlad %[a2], %[y0], %[x0], %[a2]\n\t"                     \
    "smlad %[a3], %[y0], %[x2], %[a3]\n\t"                     \
    "smlad %[a2], %[y1], %[x1], %[a2]\n\t"                     \
    "smlad %[a3], %[y1], %[x3], %[a3]\n\t"                     \
    "ldrd %[y0], %[y1], [%[w]], #8\n\t"                        \
    "smlad %[a0], %[y0], %[x0], %[a0]\n\t"                     \
    "smlad %[a1], %[y0], %[x2], %[a1]\n\t"                     \
    "smlad %[a0], %[y1], %[x1], %[a0]\n\t"                     \
    "smlad %[a1], %[y1], %[x3], %[a1]\n\t"
#define DEFINE_DOT(NAME, K, OFF)                                                          \
    static inline __attribute__((always_inline)) void NAME(const uint32_t *w, int32_t acc[4]) { \
        const uint32_t *c = col, *end = col + (K);                                         \
        int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];                        \
        uint32_t x0, x1, x2, x3, y0, y1;                                                   \
        __asm__ volatile("1:\n\t" STEP(OFF) STEP(OFF) "cmp %[c], %[end]\n\tbne 1b"         \
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                           [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3), \
                           [y0] "=&r"(y0), [y1] "=&r"(y1), [c] "+r"(c), [w] "+r"(w)        \
                         : [end] "r"(end)                                                  \
                         : "memory", "cc");                                                \
        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;                                \
    }
#else
/* the same sums in C, for the host tests of this file */
#define DEFINE_DOT(NAME, K, OFF)                                                          \
    static void NAME(const uint32_t *w, int32_t acc[4]) {                                 \
        for (int k = 0; k < (K); k++) {                                                    \
            acc[0] = mcu_smlad(w[k], col[k], acc[0]);                                      \
            acc[1] = mcu_smlad(w[k], col[(K) + k], acc[1]);                                \
            acc[2] = mcu_smlad(w[(K) + k], col[k], acc[2]);                                \
            acc[3] = mcu_smlad(w[(K) + k], col[(K) + k], acc[3]);                          \
        }                                                                                  \
    }
#endif
DEFINE_DOT(dot1, K1, "304")     /* byte offsets 4 * K of the second pixel and channel */
DEFINE_DOT(dot2, K2, "800")
DEFINE_DOT(dot3, K3, "288")

/* the 2x2 block's outputs (channels oc, oc+1 of two neighbouring HWC pixels, at o and
 * o2) as uint8 */
static inline __attribute__((always_inline)) void store_2x2(uint8_t *o, uint8_t *o2, int oc, const int32_t acc[4],
                                                            const int32_t *mult, const int32_t *shift,
                                                            const int32_t *zp, int relu) {
    const mcu_requant_t qa = mcu_requant_params(mult[oc], shift[oc], zp[oc], relu);
    const mcu_requant_t qb = mcu_requant_params(mult[oc + 1], shift[oc + 1], zp[oc + 1], relu);
    o[oc] = mcu_requant_u8(acc[0], &qa);
    o2[oc] = mcu_requant_u8(acc[1], &qa);
    o[oc + 1] = mcu_requant_u8(acc[2], &qb);
    o2[oc + 1] = mcu_requant_u8(acc[3], &qb);
}

void mcu_conv1_row(const uint8_t *const rows[7], uint8_t *out, int width) {
    const uint8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4], *r5 = rows[5],
                  *r6 = rows[6];
    for (int ox = 0; ox < width; ox += 2) {        /* width = 4 x the latent width: even */
        for (int p = 0; p < 2; p++) {
            const int off = 6 * (ox + p);        /* padded pixel 2*x = image x 2*x-3, 3 bytes each */
            uint32_t *c = col + K1 * p;
            widen(r0 + off, 5, c);
            widen(r1 + off, 5, c + 10);
            widen(r2 + off, 5, c + 20);
            widen(r3 + off, 5, c + 30);
            widen(r4 + off, 5, c + 40);
            widen(r5 + off, 5, c + 50);
            widen(r6 + off, 5, c + 60);
            c[70] = r0[off + 20] | (uint32_t)r1[off + 20] << 16;
            c[71] = r2[off + 20] | (uint32_t)r3[off + 20] << 16;
            c[72] = r4[off + 20] | (uint32_t)r5[off + 20] << 16;
            c[73] = r6[off + 20];            /* pairs 74, 75 have zero weights */
        }
        uint8_t *o = out + MCU_C1 * ox;
        for (int oc = 0; oc < MCU_C1; oc += 2) {
            int32_t acc[4] = {mcu_conv1_bias[oc], mcu_conv1_bias[oc], mcu_conv1_bias[oc + 1], mcu_conv1_bias[oc + 1]};
            dot1(mcu_conv1_wpairs[oc], acc);
            store_2x2(o, o + MCU_C1, oc, acc, mcu_conv1_multiplier, mcu_conv1_shift, mcu_conv1_out_zp, MCU_CONV1_RELU);
        }
    }
}

/* An odd width's last pair has a second pixel past the row: it is computed from the
 * row's slack and its outputs go to a dump, so the next layer's zero padding stays. */
static uint8_t dump[MCU_C1];

void mcu_conv2_row(const uint8_t *const rows[5], uint8_t *out, int width) {
    for (int ox = 0; ox < width; ox += 2) {
        for (int p = 0; p < 2; p++)
            for (int ky = 0; ky < 5; ky++) widen(rows[ky] + MCU_C1 * 4 * (ox + p), 20, col + K2 * p + 40 * ky);
        uint8_t *o = out + MCU_C1 * ox, *o2 = ox + 1 < width ? o + MCU_C1 : dump;
        for (int oc = 0; oc < MCU_C1; oc += 2) {
            int32_t acc[4] = {mcu_conv2_bias[oc], mcu_conv2_bias[oc], mcu_conv2_bias[oc + 1], mcu_conv2_bias[oc + 1]};
            dot2(mcu_conv2_wpairs[oc], acc);
            store_2x2(o, o2, oc, acc, mcu_conv2_multiplier, mcu_conv2_shift, mcu_conv2_out_zp, MCU_CONV2_RELU);
        }
    }
}

void mcu_conv3_row(const uint8_t *const rows[3], int8_t *out, int width, int stride) {
    for (int ox = 0; ox < width; ox += 2) {
        const int pixels = ox + 1 < width ? 2 : 1;
        for (int p = 0; p < 2; p++)
            for (int ky = 0; ky < 3; ky++) widen(rows[ky] + MCU_C1 * (ox + p), 12, col + K3 * p + 24 * ky);
        for (int oc = 0; oc < MCU_CHANNELS; oc += 2) {
            int32_t acc[4] = {mcu_conv3_bias[oc], mcu_conv3_bias[oc], mcu_conv3_bias[oc + 1], mcu_conv3_bias[oc + 1]};
            dot3(mcu_conv3_wpairs[oc], acc);
            for (int j = 0; j < 4; j++) {
                int c = oc + (j >> 1);
                if ((j & 1) >= pixels) continue;
                out[c * stride + ox + (j & 1)] = mcu_out_s8(acc[j], mcu_conv3_multiplier[c], mcu_conv3_shift[c],
                                                         mcu_conv3_out_zp[c], MCU_CONV3_RELU);
            }
        }
    }
}
