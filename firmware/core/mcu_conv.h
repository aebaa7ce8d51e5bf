/* The encoder's three convolutions, one output row at a time, on the row rings of the
 * streaming encoder (mcu_codec.c).  Two interchangeable implementations:
 *   mcu_conv_c.c    portable C99, any core (Cortex-M0/M3, the host): the oracle;
 *   mcu_conv_dsp.c  SMLAD / UXTB16 of the Armv7E-M / Armv8-M DSP extension (M4, M7, M33).
 * Both give the same integers as TFLite's int8 convolution (requantisation below).
 *
 * Activations are stored HWC as uint8 u = int8 value + 128: the input zero point of
 * every layer is -128, so (value - zero point) = u, and a zero byte is padding. */
#ifndef MCU_CONV_H
#define MCU_CONV_H
#include <stdint.h>

#include "encoder_int8.h"
#include "mcu_codec.h"

#if defined(__has_include)
#if __has_include("encoder_inter.h")
#include "encoder_inter.h"       /* video-mode tables, from `mcucoder fit-inter` */
#define MCU_HAVE_INTER 1
#endif
#endif
#ifndef MCU_HAVE_INTER
#define MCU_HAVE_INTER 0
#endif

/* Scratch memory of the SIMD kernels' im2col: two pixels x 200 pairs. */
#define MCU_SCRATCH_WORDS 400
extern uint32_t mcu_scratch[MCU_SCRATCH_WORDS];

#if MCU_CONV1_IN_ZP != -128 || MCU_CONV2_IN_ZP != -128 || MCU_CONV3_IN_ZP != -128
#error "the row kernels assume an input zero point of -128 (zero bytes are padding)"
#endif
#if MCU_CONV1_STRIDE != 2 || MCU_CONV1_PAD != 3 || MCU_CONV2_STRIDE != 4 || MCU_CONV2_PAD != 1 || \
    MCU_CONV3_STRIDE != 1 || MCU_CONV3_PAD != 1
#error "the row kernels are written for the paper's geometry (k7 s2 p3, k5 s4 p1, k3 s1 p1)"
#endif

#define MCU_C1 16                             /* conv1 and conv2 output channels */
#define MCU_MAX_PW (MCU_MAX_LW * 8)           /* the widest coded picture, padded */
#define MCU_MAX_A1 (MCU_MAX_PW / 2)           /* conv1 output: half the padded picture */
/* One camera row as the kernels read it: 3 zero pixels on each side (conv1's padding)
 * and 4 slack bytes, because the DSP kernel reads whole words past a tap's last byte;
 * rounded up to words.  The ring's row stride follows the coded width at run time. */
#define MCU_IN_ROW_BYTES(pw) ((((pw) + 6) * 3 + 4 + 3) & ~3)
#define MCU_IN_ROW_OFFSET 9                   /* where pixel 0 of a camera row goes */
/* conv1 and conv2 output rows: one zero pixel on each side (the next layer's padding),
 * and 3 pixels of slack: the DSP conv2 kernel reads (and drops) a second pixel past
 * an odd latent width. */
#define MCU_A1_ROW_BYTES ((MCU_MAX_A1 + 2) * MCU_C1 + 48)
#define MCU_A2_ROW_BYTES ((MCU_MAX_LW + 2 + 1) * MCU_C1)

/* rows[ky] is the start (padding included) of input row 2*oy - 3 + ky; writes the
 * `width` pixels (half the padded picture's) of one conv1 output row to out (pixel 0,
 * after its padding). */
void mcu_conv1_row(const uint8_t *const rows[7], uint8_t *out, int width);
/* rows[ky]: conv1 output row 4*oy - 1 + ky (padding included); writes `width` pixels
 * (the latent width) to out as above. */
void mcu_conv2_row(const uint8_t *const rows[5], uint8_t *out, int width);
/* rows[ky]: conv2 output row oy - 1 + ky; writes out[c * stride + x], x < width, for
 * every channel c (out: the latent's row oy of channel 0). */
void mcu_conv3_row(const uint8_t *const rows[3], int8_t *out, int width, int stride);

/* --- TFLite's fixed-point requantisation (bit-exact with the reference) --------------
 * Saturating rounding doubling high multiply: TFLite divides (a*b + nudge) by 2^31 with
 * truncation; adding 2^30 and shifting (flooring) gives the same integer for both signs,
 * in fewer instructions.  a*b never reaches INT32_MIN * INT32_MIN: multipliers are > 0. */
static inline int32_t mcu_srdhm(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * b + (1ll << 30)) >> 31);
}

/* x / 2^exponent rounded half away from zero, as TFLite's RoundingDivideByPOT. */
static inline int32_t mcu_rounding_divide_by_pot(int32_t x, int exponent) {
    if (exponent == 0) return x;
    return (x + (1 << (exponent - 1)) - (int32_t)((uint32_t)x >> 31)) >> exponent;
}

/* One output channel's requantisation, split once per channel into the left shift
 * (shift > 0) and right shift (shift < 0) that TFLite applies around the multiply. */
typedef struct {
    int32_t multiplier, left, right, zp, lo;    /* zp and lo (the ReLU floor) as stored uint8 */
} mcu_requant_t;

static inline mcu_requant_t mcu_requant_params(int32_t multiplier, int32_t shift, int32_t zp, int relu) {
    mcu_requant_t q = {multiplier, shift > 0 ? shift : 0, shift > 0 ? 0 : -shift, zp + 128, relu ? zp + 128 : 0};
    return q;
}

/* Requantised output as a stored uint8 (value + 128), clamped at the ReLU floor. */
static inline uint8_t mcu_requant_u8(int32_t acc, const mcu_requant_t *q) {
    int32_t v = mcu_rounding_divide_by_pot(mcu_srdhm(acc * (1 << q->left), q->multiplier), q->right) + q->zp;
    if (v < q->lo) v = q->lo;
    if (v > 255) v = 255;
    return (uint8_t)v;
}

static inline uint8_t mcu_out_u8(int32_t acc, int32_t multiplier, int32_t shift, int32_t zp, int relu) {
    mcu_requant_t q = mcu_requant_params(multiplier, shift, zp, relu);
    return mcu_requant_u8(acc, &q);
}

static inline int8_t mcu_out_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t zp, int relu) {
    return (int8_t)(mcu_out_u8(acc, multiplier, shift, zp, relu) - 128);
}
#endif
