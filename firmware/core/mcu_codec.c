/* See mcu_codec.h.  The model parameters come from the generated header
 * (models/<name>/encoder_int8.h, written by `mcucoder export`). */
#include "mcu_codec.h"

#include "mcu_conv.h"
#include "mcu_video.h"

#define RANS_PROB_BITS 12
#define RANS_L (1u << 23)

uint32_t mcu_model_id(void) { return MCU_MODEL_ID; }

/* shared by the convolutions (im2col) and video-mode coding, which never overlap */
uint32_t mcu_scratch[MCU_SCRATCH_WORDS] __attribute__((aligned(8)));

/* --- profiling ------------------------------------------------------------------------ */
uint32_t mcu_stage_ticks[MCU_STAGES];
static uint32_t (*stage_clock)(void);
static uint32_t stage_t0;

void mcu_set_clock(uint32_t (*clock)(void)) { stage_clock = clock; }
static void stage_begin(void) { if (stage_clock) stage_t0 = stage_clock(); }
static void stage_end(int stage) { if (stage_clock) mcu_stage_ticks[stage] += stage_clock() - stage_t0; }

/* --- row-streaming encoder -------------------------------------------------------------
 * conv1 row r reads camera rows 2r-3..2r+3, conv2 row r reads conv1 rows 4r-1..4r+3 and
 * conv3 row r reads conv2 rows r-1..r+1, so rings of 8, 5 and 3 rows suffice: a row is
 * overwritten only once nothing later needs it.  Nothing is computed twice.  Padding
 * rows point at a zero row; padding columns are zero bytes that are never written. */
#define IN_RING 8
#define A1_RING 5
#define A2_RING 3
static uint8_t in_ring[IN_RING][MCU_IN_ROW_BYTES];     /* the camera row ring: 5.5 KB */
static uint8_t a1_ring[A1_RING][MCU_A1_ROW_BYTES];     /* 9.1 KB */
static uint8_t a2_ring[A2_RING][MCU_A2_ROW_BYTES];     /* 1.4 KB */
static const uint8_t zero_row[MCU_A1_ROW_BYTES];       /* the longest row; in flash */

int mcu_encode_latent_rows(mcu_row_reader read_row, void *ctx,
                           int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    int next_in = 0, next_a1 = 0, next_a2 = 0;
    for (int oy3 = 0; oy3 < MCU_LATENT; oy3++) {
        int last2 = oy3 + 1 < MCU_LATENT ? oy3 + 1 : MCU_LATENT - 1;
        for (; next_a2 <= last2; next_a2++) {
            for (; next_a1 <= 4 * next_a2 + 3; next_a1++) {
                int last_in = 2 * next_a1 + 3 < MCU_IMAGE_SIZE ? 2 * next_a1 + 3 : MCU_IMAGE_SIZE - 1;
                for (; next_in <= last_in; next_in++) {
                    stage_begin();
                    int err = read_row(ctx, next_in, in_ring[next_in % IN_RING] + MCU_IN_ROW_OFFSET);
                    stage_end(MCU_STAGE_CAMERA);
                    if (err) return err;
                }
                const uint8_t *rows[7];
                for (int ky = 0; ky < 7; ky++) {
                    int y = 2 * next_a1 - 3 + ky;
                    rows[ky] = y < 0 || y >= MCU_IMAGE_SIZE ? zero_row : in_ring[y % IN_RING];
                }
                stage_begin();
                mcu_conv1_row(rows, a1_ring[next_a1 % A1_RING] + MCU_C1);
                stage_end(MCU_STAGE_CONV1);
            }
            const uint8_t *rows[5];
            for (int ky = 0; ky < 5; ky++) {
                int y = 4 * next_a2 - 1 + ky;
                rows[ky] = y < 0 || y >= MCU_A1 ? zero_row : a1_ring[y % A1_RING];
            }
            stage_begin();
            mcu_conv2_row(rows, a2_ring[next_a2 % A2_RING] + MCU_C1);
            stage_end(MCU_STAGE_CONV2);
        }
        const uint8_t *rows[3];
        for (int ky = 0; ky < 3; ky++) {
            int y = oy3 - 1 + ky;
            rows[ky] = y < 0 || y >= MCU_LATENT ? zero_row : a2_ring[y % A2_RING];
        }
        stage_begin();
        mcu_conv3_row(rows, oy3, latent);
        stage_end(MCU_STAGE_CONV3);
    }
    return 0;
}

static int frame_row(void *ctx, int y, uint8_t *dst) {
    const uint8_t *src = (const uint8_t *)ctx + (size_t)y * MCU_IMAGE_SIZE * 3;
    for (int i = 0; i < MCU_IMAGE_SIZE * 3; i++) dst[i] = src[i];
    return 0;
}

void mcu_encode_latent(const uint8_t *rgb, int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    mcu_encode_latent_rows(frame_row, (void *)rgb, latent);
}

void mcu_quantize(const int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT], int channels,
                  uint8_t sym[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]) {
    stage_begin();
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
    stage_end(MCU_STAGE_CODE);
}

/* Context models of docs/bitstream.md.  Intra: MED prediction, spatial activity
 * buckets.  Inter (video mode): the reference's co-located symbol, temporal activity
 * buckets.  One rANS coder for both. */
static int activity_bucket(int activity) {
    static const uint8_t thresholds[7] = {0, 1, 2, 4, 7, 12, 20};
    int b = 0;
    while (b < 7 && activity > thresholds[b]) b++;
    return b;
}

#if MCU_HAVE_INTER
static int temporal_bucket(int activity) {
    int b = 0;
    while (b < 7 && activity > mcu_inter_thresholds[b]) b++;
    return b;
}
#endif

/* cumulative frequency below residual r: whichever end of the row is nearer (the
 * tables ship without a cumulative copy, to save 12 KB of flash) */
static uint32_t cum_freq(const uint16_t freq[64], int r) {
    uint32_t c = 0;
    if (r < 32) {
        for (int j = 0; j < r; j++) c += freq[j];
        return c;
    }
    for (int j = r; j < 64; j++) c += freq[j];
    return (1u << RANS_PROB_BITS) - c;
}

static size_t code_channel(const uint16_t freq[8][64], const uint8_t *sym, const uint8_t *ref, int edge,
                           uint8_t *out) {
    /* rANS codes backwards: bytes are emitted last-first into out + 4, then reversed */
    uint8_t *emitted = out + 4;
    uint32_t x = RANS_L;
    size_t n = 0;
    for (int i = MCU_SYMBOLS_PER_CHANNEL - 1; i >= 0; i--) {
        int px = i % MCU_LATENT;
        int a = px ? sym[i - 1] : edge;
        int b = i >= MCU_LATENT ? sym[i - MCU_LATENT] : edge;
        int r, ctx;
        if (!ref) {
            int c = (px && i >= MCU_LATENT) ? sym[i - MCU_LATENT - 1] : edge;
            int mn = a < b ? a : b, mx = a < b ? b : a;
            int pred = c >= mx ? mn : (c <= mn ? mx : a + b - c);
            r = (sym[i] - pred) & 63;
            ctx = activity_bucket((a > c ? a - c : c - a) + (b > c ? b - c : c - b));
        } else {
#if MCU_HAVE_INTER
            int ar = px ? ref[i - 1] : edge;
            int br = i >= MCU_LATENT ? ref[i - MCU_LATENT] : edge;
            r = (sym[i] - ref[i]) & 63;
            ctx = temporal_bucket((a > ar ? a - ar : ar - a) + (b > br ? b - br : br - b));
#else
            r = ctx = 0;
#endif
        }
        uint32_t f = freq[ctx][r];
        uint32_t xmax = ((RANS_L >> RANS_PROB_BITS) << 8) * f;
        while (x >= xmax) {
            emitted[n++] = (uint8_t)(x & 0xff);
            x >>= 8;
        }
        x = ((x / f) << RANS_PROB_BITS) + (x % f) + cum_freq(freq[ctx], r);
    }
    out[0] = (uint8_t)(x >> 24);
    out[1] = (uint8_t)(x >> 16);
    out[2] = (uint8_t)(x >> 8);
    out[3] = (uint8_t)x;
    for (size_t i = 0; i < n / 2; i++) {
        uint8_t t = emitted[i];
        emitted[i] = emitted[n - 1 - i];
        emitted[n - 1 - i] = t;
    }
    return 4 + n;
}

size_t mcu_code_channel(int ch, const uint8_t sym[MCU_LATENT][MCU_LATENT], uint8_t *out) {
    stage_begin();
    size_t n = code_channel(mcu_rans_freq[ch], &sym[0][0], 0, mcu_edge_symbol[ch], out);
    stage_end(MCU_STAGE_CODE);
    return n;
}

#if MCU_HAVE_INTER
size_t mcu_code_channel_inter(int ch, const uint8_t sym[MCU_LATENT][MCU_LATENT],
                              const uint8_t ref[MCU_LATENT][MCU_LATENT], uint8_t *out) {
    stage_begin();
    size_t n = code_channel(mcu_inter_freq[ch], &sym[0][0], &ref[0][0], mcu_edge_symbol[ch], out);
    stage_end(MCU_STAGE_CODE);
    return n;
}
#endif

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out) {
    static int8_t latent_buf[MCU_CHANNELS][MCU_LATENT][MCU_LATENT];
    uint8_t (*sym_buf)[MCU_LATENT][MCU_LATENT] = (uint8_t (*)[MCU_LATENT][MCU_LATENT])latent_buf;
    if (channels < 0) channels = 0;
    if (channels > MCU_CHANNELS) channels = MCU_CHANNELS;
    mcu_encode_latent(rgb, latent_buf);
    mcu_quantize(latent_buf, channels, sym_buf);     /* in place */
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
