/* Helium (MVE) row kernels (see mcu_conv.h) for the Cortex-M55 / M85: VMLADAVA.S8 takes
 * 16 multiply-accumulates per instruction, 8x what SMLAD does.  For each output pixel
 * its receptive field is gathered once (im2col, 16 bytes per vector load/store), then
 * every output channel is one chain of VMLADAVA over the exporter's int8 weight rows
 * (mcu_convN_wmve, codec/c_header.py: mve_weights), and the 16 channels are requantised
 * together, four lanes per instruction.
 *
 * VMLADAVA multiplies signed by signed, and the activations are stored as uint8
 * u = value + 128; the gather flips the top bit (u ^ 0x80 = u - 128 as int8) and the
 * exporter folds the difference into the bias (mcu_convN_bias_mve = bias + 128 * sum(w)),
 * so the sums are TFLite's exactly.  Requantisation: VQRDMULH is TFLite's saturating
 * rounding doubling high multiply, and TFLite's rounding divide (half away from zero)
 * is VRSHL after subtracting 1 from negative lanes where there is a right shift. */
#include "mcu_conv.h"
#include "mcu_mve.h"

/* one pixel's taps, flipped to int8, in the scratch memory video-mode coding uses later */
#define col ((int8_t *)mcu_scratch)

/* per-lane requantisation parameters of up to 16 output channels */
typedef struct {
    int32_t left[16], mult[16], right[16], round_neg[16], zp[16], lo[16];
} lanes_t;

static void lanes_init(lanes_t *q, int n, const int32_t *mult, const int32_t *shift, const int32_t *zp, int relu) {
    for (int c = 0; c < n; c++) {
        const mcu_requant_t r = mcu_requant_params(mult[c], shift[c], zp[c], relu);
        q->left[c] = r.left;
        q->mult[c] = r.multiplier;
        q->right[c] = -r.right;               /* VRSHL: a negative shift is a rounding right shift */
        q->round_neg[c] = r.right ? -1 : 0;   /* TFLite rounds half away from zero: -1 on negative lanes */
        q->zp[c] = r.zp;
        q->lo[c] = r.lo;
    }
}

/* acc[0 .. 4 * groups) -> stored uint8 bytes, as mcu_requant_u8 does one at a time */
static inline __attribute__((always_inline)) void requant(const int32_t *acc, const lanes_t *q, int groups,
                                                          int8_t *out) {
    const int32x4_t top = vdupq_n_s32(255);
    for (int g = 0; g < 4 * groups; g += 4) {
        int32x4_t x = vshlq_s32(vldrwq_s32(acc + g), vldrwq_s32(q->left + g));
        x = vqrdmulhq_s32(x, vldrwq_s32(q->mult + g));
        x = vaddq_s32(x, vandq_s32(vshrq_n_s32(x, 31), vldrwq_s32(q->round_neg + g)));
        x = vrshlq_s32(x, vldrwq_s32(q->right + g));
        x = vaddq_s32(x, vldrwq_s32(q->zp + g));
        x = vminq_s32(vmaxq_s32(x, vldrwq_s32(q->lo + g)), top);
        vstrbq_s32(out + g, x);
    }
}

/* channels x taps/16 VMLADAVA chains over the gathered pixel, four channels at a time so
 * that each vector of the pixel is loaded once for four weight rows: 5 loads + 4 VMLADAVA
 * per 64 multiply-accumulates.  In assembly on the core, because GCC 12 recomputes the
 * rows' addresses and spills around the intrinsics (13 instructions where 9 do). */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
static inline __attribute__((always_inline)) void dot4(const int8_t *w0, int taps, const int32_t *bias, int32_t *acc) {
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    const int8_t *x = col, *w1 = w0 + taps, *w2 = w1 + taps, *w3 = w2 + taps;
    __asm__ volatile("wls lr, %[n], 2f\n"
                     "1:\n\t"
                     "vldrb.u8 q0, [%[x]], #16\n\t"
                     "vldrb.u8 q1, [%[w0]], #16\n\t"
                     "vldrb.u8 q2, [%[w1]], #16\n\t"
                     "vmladava.s8 %[a0], q1, q0\n\t"
                     "vldrb.u8 q3, [%[w2]], #16\n\t"
                     "vmladava.s8 %[a1], q2, q0\n\t"
                     "vldrb.u8 q1, [%[w3]], #16\n\t"
                     "vmladava.s8 %[a2], q3, q0\n\t"
                     "vmladava.s8 %[a3], q1, q0\n\t"
                     "le lr, 1b\n"
                     "2:"
                     : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3), [x] "+r"(x), [w0] "+r"(w0),
                       [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3)
                     : [n] "r"(taps / 16)
                     : "q0", "q1", "q2", "q3", "lr", "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#else
/* the same sums with the C models of mcu_mve.h, for the host tests of this file */
static void dot4(const int8_t *w0, int taps, const int32_t *bias, int32_t *acc) {
    for (int c = 0; c < 4; c++) {
        int32_t a = bias[c];
        for (int v = 0; v < taps; v += 16) a = vmladavaq_s8(a, vldrbq_s8(w0 + c * taps + v), vldrbq_s8(col + v));
        acc[c] = a;
    }
}
#endif

/* rows x bytes (a multiple of 16) from each row at offset, flipped to int8, side by side */
static inline __attribute__((always_inline)) void gather(const uint8_t *const *rows, int n, int offset, int bytes) {
    const int8x16_t flip = vdupq_n_s8(-128);
    for (int ky = 0; ky < n; ky++) {
        const int8_t *src = (const int8_t *)rows[ky] + offset;
        for (int j = 0; j < bytes; j += 16) vstrbq_s8(col + bytes * ky + j, veorq_s8(vldrbq_s8(src + j), flip));
    }
}

static inline __attribute__((always_inline)) void dot(const int8_t *w, const int32_t *bias, int channels, int taps,
                                                      int32_t *acc) {
    for (int oc = 0; oc < channels; oc += 4) dot4(w + oc * taps, taps, bias + oc, acc + oc);
}

void mcu_conv1_row(const uint8_t *const rows[7], uint8_t *out, int width) {
    lanes_t q;
    lanes_init(&q, MCU_C1, mcu_conv1_multiplier, mcu_conv1_shift, mcu_conv1_out_zp, MCU_CONV1_RELU);
    const int8x16_t flip = vdupq_n_s8(-128);
    int32_t acc[MCU_C1];
    for (int ox = 0; ox < width; ox++) {
        /* 7 rows x 21 bytes (7 padded pixels x RGB) side by side: two overlapping vectors a row;
         * bytes 147..159 are whatever was there, against zero weights */
        for (int ky = 0; ky < 7; ky++) {
            const int8_t *src = (const int8_t *)rows[ky] + 6 * ox;
            vstrbq_s8(col + 21 * ky, veorq_s8(vldrbq_s8(src), flip));
            vstrbq_s8(col + 21 * ky + 5, veorq_s8(vldrbq_s8(src + 5), flip));
        }
        dot(&mcu_conv1_wmve[0][0], mcu_conv1_bias_mve, MCU_C1, sizeof mcu_conv1_wmve[0], acc);
        requant(acc, &q, MCU_C1 / 4, (int8_t *)out + MCU_C1 * ox);
    }
}

void mcu_conv2_row(const uint8_t *const rows[5], uint8_t *out, int width) {
    lanes_t q;
    lanes_init(&q, MCU_C1, mcu_conv2_multiplier, mcu_conv2_shift, mcu_conv2_out_zp, MCU_CONV2_RELU);
    int32_t acc[MCU_C1];
    for (int ox = 0; ox < width; ox++) {
        gather(rows, 5, MCU_C1 * 4 * ox, 5 * MCU_C1);      /* 5 rows x 5 pixels x 16 channels */
        dot(&mcu_conv2_wmve[0][0], mcu_conv2_bias_mve, MCU_C1, sizeof mcu_conv2_wmve[0], acc);
        requant(acc, &q, MCU_C1 / 4, (int8_t *)out + MCU_C1 * ox);
    }
}

void mcu_conv3_row(const uint8_t *const rows[3], int8_t *out, int width, int stride) {
    lanes_t q;
    lanes_init(&q, MCU_CHANNELS, mcu_conv3_multiplier, mcu_conv3_shift, mcu_conv3_out_zp, MCU_CONV3_RELU);
    int32_t acc[MCU_CHANNELS];
    int8_t u[MCU_CHANNELS];
    for (int ox = 0; ox < width; ox++) {
        gather(rows, 3, MCU_C1 * ox, 3 * MCU_C1);          /* 3 rows x 3 pixels x 16 channels */
        dot(&mcu_conv3_wmve[0][0], mcu_conv3_bias_mve, MCU_CHANNELS, sizeof mcu_conv3_wmve[0], acc);
        requant(acc, &q, MCU_CHANNELS / 4, u);
        for (int c = 0; c < MCU_CHANNELS; c++) out[c * stride + ox] = (int8_t)((uint8_t)u[c] - 128);
    }
}
