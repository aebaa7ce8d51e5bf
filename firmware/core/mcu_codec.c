/* See mcu_codec.h.  The model parameters come from the generated header
 * (models/<name>/encoder_int8.h, written by `mcucoder export`). */
#include "mcu_codec.h"

#include <string.h>

#include "encoder_int8.h"

#define RANS_PROB_BITS 12
#define RANS_L (1u << 23)

/* --- TFLite reference fixed-point arithmetic ------------------------------------- */
static int32_t srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / (1ll << 31));   /* truncates toward zero, as TFLite */
}

static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
    int32_t mask = (int32_t)((1ll << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t requantize(int32_t acc, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return rounding_divide_by_pot(srdhm(acc * (1 << left), multiplier), right);
}

static int8_t clamp_out(int32_t v, int32_t lo) {
    if (v < lo) v = lo;
    if (v > 127) v = 127;
    return (int8_t)v;
}

/* --- buffers (static: no malloc) ---------------------------------------------------- */
#define A1 (MCU_IMAGE_SIZE / 2)
static int8_t act1[16][A1][A1];                      /* 200,704 bytes */
static int8_t act2[16][MCU_LATENT][MCU_LATENT];
static int8_t latent_buf[MCU_CHANNELS][MCU_LATENT][MCU_LATENT];
static uint8_t sym_buf[MCU_CHANNELS][MCU_LATENT][MCU_LATENT];

uint32_t mcu_model_id(void) { return MCU_MODEL_ID; }

/* conv1 3->16 k7 s2 p3 + ReLU, reading the HWC uint8 frame directly:
 * the int8 input is p - 128 with zero point -128, so (x - zp) is the pixel value. */
static void conv1(const uint8_t *rgb) {
    for (int oc = 0; oc < 16; oc++) {
        for (int oy = 0; oy < A1; oy++) {
            for (int ox = 0; ox < A1; ox++) {
                int32_t acc = mcu_conv1_bias[oc];
                for (int ky = 0; ky < 7; ky++) {
                    int iy = oy * MCU_CONV1_STRIDE - MCU_CONV1_PAD + ky;
                    if (iy < 0 || iy >= MCU_IMAGE_SIZE) continue;
                    for (int kx = 0; kx < 7; kx++) {
                        int ix = ox * MCU_CONV1_STRIDE - MCU_CONV1_PAD + kx;
                        if (ix < 0 || ix >= MCU_IMAGE_SIZE) continue;
                        const uint8_t *px = rgb + 3 * (iy * MCU_IMAGE_SIZE + ix);
                        for (int ic = 0; ic < 3; ic++)
                            acc += ((int32_t)px[ic] - 128 - MCU_CONV1_IN_ZP) * mcu_conv1_weight[oc][ic][ky][kx];
                    }
                }
                int32_t v = requantize(acc, mcu_conv1_multiplier[oc], mcu_conv1_shift[oc]) + mcu_conv1_out_zp[oc];
                act1[oc][oy][ox] = clamp_out(v, MCU_CONV1_RELU ? mcu_conv1_out_zp[oc] : -128);
            }
        }
    }
}

/* conv2 and conv3 are spelled out rather than one generic routine: with constant
 * shapes the compiler unrolls the loops (a generic version measured 518 M instead of
 * 372 M instructions per frame on the M7). */
static void conv2(void) {
    for (int oc = 0; oc < 16; oc++)
        for (int oy = 0; oy < MCU_LATENT; oy++)
            for (int ox = 0; ox < MCU_LATENT; ox++) {
                int32_t acc = mcu_conv2_bias[oc];
                for (int ic = 0; ic < 16; ic++)
                    for (int ky = 0; ky < 5; ky++) {
                        int iy = oy * MCU_CONV2_STRIDE - MCU_CONV2_PAD + ky;
                        if (iy < 0 || iy >= A1) continue;
                        for (int kx = 0; kx < 5; kx++) {
                            int ix = ox * MCU_CONV2_STRIDE - MCU_CONV2_PAD + kx;
                            if (ix < 0 || ix >= A1) continue;
                            acc += ((int32_t)act1[ic][iy][ix] - MCU_CONV2_IN_ZP) * mcu_conv2_weight[oc][ic][ky][kx];
                        }
                    }
                int32_t v = requantize(acc, mcu_conv2_multiplier[oc], mcu_conv2_shift[oc]) + mcu_conv2_out_zp[oc];
                act2[oc][oy][ox] = clamp_out(v, MCU_CONV2_RELU ? mcu_conv2_out_zp[oc] : -128);
            }
}

static void conv3(int8_t out[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    for (int oc = 0; oc < MCU_CHANNELS; oc++)
        for (int oy = 0; oy < MCU_LATENT; oy++)
            for (int ox = 0; ox < MCU_LATENT; ox++) {
                int32_t acc = mcu_conv3_bias[oc];
                for (int ic = 0; ic < 16; ic++)
                    for (int ky = 0; ky < 3; ky++) {
                        int iy = oy * MCU_CONV3_STRIDE - MCU_CONV3_PAD + ky;
                        if (iy < 0 || iy >= MCU_LATENT) continue;
                        for (int kx = 0; kx < 3; kx++) {
                            int ix = ox * MCU_CONV3_STRIDE - MCU_CONV3_PAD + kx;
                            if (ix < 0 || ix >= MCU_LATENT) continue;
                            acc += ((int32_t)act2[ic][iy][ix] - MCU_CONV3_IN_ZP) * mcu_conv3_weight[oc][ic][ky][kx];
                        }
                    }
                int32_t v = requantize(acc, mcu_conv3_multiplier[oc], mcu_conv3_shift[oc]) + mcu_conv3_out_zp[oc];
                out[oc][oy][ox] = clamp_out(v, MCU_CONV3_RELU ? mcu_conv3_out_zp[oc] : -128);
            }
}

void mcu_encode_latent(const uint8_t *rgb, int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    conv1(rgb);
    conv2();
    conv3(latent);
}

void mcu_quantize(const int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT], int channels,
                  uint8_t sym[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    for (int c = 0; c < channels; c++) {
        int32_t lo = mcu_latent_lo[c], hi = mcu_latent_hi[c], span = hi - lo;
        for (int y = 0; y < MCU_LATENT; y++)
            for (int x = 0; x < MCU_LATENT; x++) {
                int32_t v = latent[c][y][x];
                if (v < lo) v = lo;
                if (v > hi) v = hi;
                sym[c][y][x] = (uint8_t)((2 * 63 * (v - lo) + span) / (2 * span));
            }
    }
}

/* Context model of docs/bitstream.md: MED prediction, activity buckets. */
static int activity_bucket(int activity) {
    static const uint8_t thresholds[7] = {0, 1, 2, 4, 7, 12, 20};
    int b = 0;
    while (b < 7 && activity > thresholds[b]) b++;
    return b;
}

size_t mcu_code_channel(int ch, const uint8_t sym[MCU_LATENT][MCU_LATENT], uint8_t *out) {
    static uint8_t emitted[MCU_MAX_CHUNK];
    const int edge = mcu_edge_symbol[ch];
    uint32_t x = RANS_L;
    size_t n = 0;
    for (int i = MCU_SYMBOLS_PER_CHANNEL - 1; i >= 0; i--) {
        int py = i / MCU_LATENT, px = i % MCU_LATENT;
        int a = px ? sym[py][px - 1] : edge;
        int b = py ? sym[py - 1][px] : edge;
        int c = (px && py) ? sym[py - 1][px - 1] : edge;
        int mn = a < b ? a : b, mx = a < b ? b : a;
        int pred = c >= mx ? mn : (c <= mn ? mx : a + b - c);
        int r = (sym[py][px] - pred) & 63;
        int ctx = activity_bucket((a > c ? a - c : c - a) + (b > c ? b - c : c - b));
        uint32_t f = mcu_rans_freq[ch][ctx][r];
        uint32_t xmax = ((RANS_L >> RANS_PROB_BITS) << 8) * f;
        while (x >= xmax) {
            emitted[n++] = (uint8_t)(x & 0xff);
            x >>= 8;
        }
        x = ((x / f) << RANS_PROB_BITS) + (x % f) + mcu_rans_cum[ch][ctx][r];
    }
    out[0] = (uint8_t)(x >> 24);
    out[1] = (uint8_t)(x >> 16);
    out[2] = (uint8_t)(x >> 8);
    out[3] = (uint8_t)x;
    for (size_t k = 0; k < n; k++) out[4 + k] = emitted[n - 1 - k];
    return 4 + n;
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out) {
    if (channels < 0) channels = 0;
    if (channels > MCU_CHANNELS) channels = MCU_CHANNELS;
    mcu_encode_latent(rgb, latent_buf);
    mcu_quantize(latent_buf, channels, sym_buf);
    out[0] = 'M'; out[1] = 'C'; out[2] = 1; out[3] = 0;
    put_u32(out + 4, MCU_MODEL_ID);
    put_u32(out + 8, sequence);
    out[12] = MCU_CHANNELS; out[13] = MCU_LATENT; out[14] = MCU_LATENT; out[15] = (uint8_t)channels;
    size_t pos = MCU_HEADER_BYTES + 3 * (size_t)channels;
    for (int c = 0; c < channels; c++) {
        size_t len = mcu_code_channel(c, sym_buf[c], out + pos);
        uint8_t *e = out + MCU_HEADER_BYTES + 3 * c;
        e[0] = (uint8_t)c; e[1] = (uint8_t)len; e[2] = (uint8_t)(len >> 8);
        pos += len;
    }
    return pos;
}
