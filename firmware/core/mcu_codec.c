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

/* --- geometry ------------------------------------------------------------------------- */
mcu_geometry_t mcu_geo;

/* --- row-streaming encoder -------------------------------------------------------------
 * conv1 row r reads coded rows 2r-3..2r+3, conv2 row r reads conv1 rows 4r-1..4r+3 and
 * conv3 row r reads conv2 rows r-1..r+1, so rings of 7, 5 and 3 rows suffice: a row is
 * overwritten only once nothing later needs it.  Nothing is computed twice.  Padding
 * rows point at a zero row (conv2's top one at the conv1 ring's fifth row, zeroed at
 * each frame's start: it is written only after conv2 row 0); padding columns are zero
 * bytes that are never written.  Rows and columns past the coded picture, up to its
 * padded size, repeat its last row and column (edge replication).
 *
 * The camera ring's row stride follows the coded width, so a scaled frame uses only
 * the first part of the ring; the rest holds the camera row being decimated and the
 * block sums: a scaled frame needs no RAM that a frame at scale 1 does not. */
#define IN_RING 7
#define A1_RING 5
#define A2_RING 3
#define IN_RING_BYTES (IN_RING * MCU_IN_ROW_BYTES(MCU_MAX_PW))
static uint8_t in_ring[IN_RING_BYTES] __attribute__((aligned(4)));   /* the camera row ring */
static uint8_t a1_ring[A1_RING][MCU_A1_ROW_BYTES] __attribute__((aligned(4)));
static uint8_t a2_ring[A2_RING][MCU_A2_ROW_BYTES] __attribute__((aligned(4)));
#define ZERO_ROW_BYTES (MCU_IN_ROW_BYTES(MCU_MAX_PW) > MCU_A2_ROW_BYTES ? MCU_IN_ROW_BYTES(MCU_MAX_PW) \
                                                                       : MCU_A2_ROW_BYTES)
static const uint8_t zero_row[ZERO_ROW_BYTES];       /* in flash */

/* Chunks are coded once the convolutions are done, so the conv1 ring holds the chunk
 * and the camera ring video mode's second one, where they are large enough (up to
 * 1280 wide, and 896 high; else buffers of their own).  Both rings are cleared at each
 * frame's start. */
#if MCU_MAX_CHUNK <= A1_RING * MCU_A1_ROW_BYTES
#define CHUNK0 (&a1_ring[0][0])
#else
static uint8_t chunk0[MCU_MAX_CHUNK];
#define CHUNK0 chunk0
#endif
#if MCU_MAX_CHUNK <= IN_RING_BYTES
#define CHUNK1 in_ring
#else
static uint8_t chunk1[MCU_MAX_CHUNK];
#define CHUNK1 chunk1
#endif
static int in_ring_dirty;        /* the camera ring held a chunk: clear it before the next frame */
uint8_t *mcu_chunk_buffer(int which) {
    if (which) in_ring_dirty = 1;
    return which ? CHUNK1 : CHUNK0;
}

static int in_stride;                                /* bytes per camera ring row at this geometry */

static void clear(uint8_t *p, size_t n) {
    while (n--) *p++ = 0;
}

int mcu_set_geometry(int width, int height, int shift) {
    if (width < MCU_STRIDE || height < MCU_STRIDE || width > MCU_MAX_WIDTH || height > MCU_MAX_HEIGHT)
        return MCU_ERR_SIZE;
    if (shift < 0 || shift > MCU_MAX_SHIFT) return MCU_ERR_SHIFT;
    const int n = 1 << shift, cw = (width + n - 1) >> shift, ch = (height + n - 1) >> shift;
    if (cw < MCU_STRIDE || ch < MCU_STRIDE) return MCU_ERR_SIZE;
    mcu_geometry_t g = {width, height, shift, cw, ch, (cw + 7) & ~7, (ch + 7) & ~7, 0, 0, 0};
    g.lw = g.pw / MCU_STRIDE;
    g.lh = g.ph / MCU_STRIDE;
    g.n = g.lw * g.lh;
    if (g.pw != mcu_geo.pw || g.ph != mcu_geo.ph) {      /* the padding columns move: zero the rings */
        clear(in_ring, sizeof in_ring);
        clear(&a1_ring[0][0], sizeof a1_ring);
        clear(&a2_ring[0][0], sizeof a2_ring);
    }
    /* a scaled frame's camera row and block sums fit in the ring's tail (see above) */
    if (shift && IN_RING * MCU_IN_ROW_BYTES(g.pw) + ((3 * width + 3) & ~3) + 6 * cw > IN_RING_BYTES) return MCU_ERR_SIZE;
    mcu_geo = g;
    in_stride = MCU_IN_ROW_BYTES(g.pw);
    return MCU_OK;
}

int mcu_bitstream_version(void) {
    if (mcu_geo.shift) return 4;
    return mcu_geo.width == MCU_IMAGE_SIZE && mcu_geo.height == MCU_IMAGE_SIZE ? 1 : 3;
}

/* Scaled frames: the camera row and the block sums, in the ring's unused tail. */
static uint8_t *cam_row(void) { return in_ring + IN_RING * in_stride; }
static uint16_t *block_sums(void) {
    return (uint16_t *)(in_ring + ((IN_RING * in_stride + 3 * mcu_geo.width + 3) & ~3));
}

/* Coded row y (< mcu_geo.ch) into dst (its pixel 0), from camera rows y<<s .. (y<<s)+n-1
 * (the last camera row repeated past the picture), each block's sum rounded and shifted:
 * geometry.decimate of the Python reference.  Columns up to the padded width repeat the
 * last one. */
static int coded_row(mcu_row_reader read_row, void *ctx, int y, uint8_t *dst, int *next_cam) {
    const mcu_geometry_t *g = &mcu_geo;
    if (!g->shift) {
        int err = read_row(ctx, y, dst);
        if (err) return err;
        *next_cam = y + 1;
    } else {
        const int n = 1 << g->shift, round = n * n / 2, c3 = 3 * g->cw;
        uint8_t *cam = cam_row();
        uint16_t *sum = block_sums();
        for (int i = 0; i < c3; i++) sum[i] = 0;
        for (int dy = 0; dy < n; dy++) {
            int cy = (y << g->shift) + dy;
            if (cy < g->height) {            /* else: cam still holds the last row, repeated */
                int err = read_row(ctx, cy, cam);
                if (err) return err;
                *next_cam = cy + 1;
            }
            /* whole blocks, then the last one with the camera's last column repeated */
            const int whole = g->width >> g->shift;
            const uint8_t *p = cam;
            uint16_t *s = sum;
            for (int x = 0; x < whole; x++, s += 3)
                for (int dx = 0; dx < n; dx++, p += 3) {
                    s[0] = (uint16_t)(s[0] + p[0]);
                    s[1] = (uint16_t)(s[1] + p[1]);
                    s[2] = (uint16_t)(s[2] + p[2]);
                }
            if (whole < g->cw)
                for (int dx = 0; dx < n; dx++) {
                    int cx = (whole << g->shift) + dx;
                    const uint8_t *q = cam + 3 * (cx < g->width ? cx : g->width - 1);
                    s[0] = (uint16_t)(s[0] + q[0]);
                    s[1] = (uint16_t)(s[1] + q[1]);
                    s[2] = (uint16_t)(s[2] + q[2]);
                }
        }
        for (int i = 0; i < c3; i++) dst[i] = (uint8_t)((sum[i] + round) >> (2 * g->shift));
    }
    for (int i = 3 * g->cw; i < 3 * g->pw; i++) dst[i] = dst[i - 3];
    return 0;
}

/* int8 latent value of channel c -> its 6-bit symbol (the quantiser of docs/bitstream.md) */
static inline uint8_t quantize(int c, int32_t v) {
    int32_t lo = mcu_latent_lo[c], hi = mcu_latent_hi[c], span = hi - lo;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (uint8_t)((2 * 63 * (v - lo) + span) / (2 * span));
}

/* one latent row of every channel, between conv3 and the packed symbols */
static int8_t latent_row[MCU_CHANNELS * MCU_MAX_LW];

/* latent_row -> row y of every channel's packed symbols, a group of four at a time (a
 * group the row shares with the row above keeps that row's symbols) */
static void pack_row(uint8_t *packed, int y) {
    const int lw = mcu_geo.lw, plane = MCU_PACKED_BYTES(mcu_geo.n);
    for (int c = 0; c < MCU_CHANNELS; c++) {
        const int8_t *v = latent_row + c * lw;
        int i = y * lw;
        uint8_t *q = packed + c * plane + 3 * (i >> 2);
        uint32_t w = (i & 3) ? (q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16) : 0;
        for (int x = 0; x < lw; x++, i++) {
            const int sh = 6 * (i & 3);
            w = (w & ~(63u << sh)) | (uint32_t)quantize(c, v[x]) << sh;
            if ((i & 3) == 3 || x == lw - 1) {
                q[0] = (uint8_t)w;
                q[1] = (uint8_t)(w >> 8);
                q[2] = (uint8_t)(w >> 16);
                q += 3;
                w = 0;
            }
        }
    }
}

/* latent: the int8 latent, or 0: packed symbols */
static int encode_rows(mcu_row_reader read_row, void *ctx, int8_t *latent, uint8_t *packed) {
    const mcu_geometry_t *g = &mcu_geo;
    const int a1_h = g->ph / 2, a1_w = g->pw / 2;
    int next_in = 0, next_a1 = 0, next_a2 = 0, next_cam = 0;
    /* conv1 row -1 (zeros until conv1 row 4) and the padding columns: the rings held the
     * last frame's chunks (mcu_chunk_buffer) */
    clear(&a1_ring[0][0], sizeof a1_ring);
    if (in_ring_dirty) {
        clear(in_ring, sizeof in_ring);
        in_ring_dirty = 0;
    }
    for (int oy3 = 0; oy3 < g->lh; oy3++) {
        int last2 = oy3 + 1 < g->lh ? oy3 + 1 : g->lh - 1;
        for (; next_a2 <= last2; next_a2++) {
            for (; next_a1 <= 4 * next_a2 + 3; next_a1++) {
                int last_in = 2 * next_a1 + 3 < g->ch ? 2 * next_a1 + 3 : g->ch - 1;
                for (; next_in <= last_in; next_in++) {
                    stage_begin();
                    int err = coded_row(read_row, ctx, next_in,
                                        in_ring + (next_in % IN_RING) * in_stride + MCU_IN_ROW_OFFSET, &next_cam);
                    stage_end(MCU_STAGE_CAMERA);
                    if (err) return err;
                }
                const uint8_t *rows[7];
                for (int ky = 0; ky < 7; ky++) {
                    int y = 2 * next_a1 - 3 + ky;
                    if (y >= g->ch && y < g->ph) y = g->ch - 1;             /* the last row, repeated */
                    rows[ky] = y < 0 || y >= g->ph ? zero_row : in_ring + (y % IN_RING) * in_stride;
                }
                stage_begin();
                mcu_conv1_row(rows, a1_ring[next_a1 % A1_RING] + MCU_C1, a1_w);
                stage_end(MCU_STAGE_CONV1);
            }
            const uint8_t *rows[5];
            for (int ky = 0; ky < 5; ky++) {
                int y = 4 * next_a2 - 1 + ky;              /* never past a1_h - 1 */
                rows[ky] = a1_ring[(y + A1_RING) % A1_RING];
            }
            stage_begin();
            mcu_conv2_row(rows, a2_ring[next_a2 % A2_RING] + MCU_C1, g->lw);
            stage_end(MCU_STAGE_CONV2);
        }
        const uint8_t *rows[3];
        for (int ky = 0; ky < 3; ky++) {
            int y = oy3 - 1 + ky;
            rows[ky] = y < 0 || y >= g->lh ? zero_row : a2_ring[y % A2_RING];
        }
        stage_begin();
        if (latent) {
            mcu_conv3_row(rows, latent + oy3 * g->lw, g->lw, g->n);
            stage_end(MCU_STAGE_CONV3);
            continue;
        }
        mcu_conv3_row(rows, latent_row, g->lw, g->lw);
        stage_end(MCU_STAGE_CONV3);
        stage_begin();
        pack_row(packed, oy3);
        stage_end(MCU_STAGE_CODE);
    }
    (void)a1_h;
    (void)next_cam;          /* every camera row has been read: the last coded row reads up to row height-1 */
    return 0;
}

static int frame_row(void *ctx, int y, uint8_t *dst) {
    const uint8_t *src = (const uint8_t *)ctx + (size_t)y * mcu_geo.width * 3;
    for (int i = 0; i < mcu_geo.width * 3; i++) dst[i] = src[i];
    return 0;
}

int mcu_encode_latent_rows(mcu_row_reader read_row, void *ctx, int8_t *latent) {
    return encode_rows(read_row, ctx, latent, 0);
}

int mcu_encode_symbols_rows(mcu_row_reader read_row, void *ctx, uint8_t *packed) {
    return encode_rows(read_row, ctx, 0, packed);
}

void mcu_encode_latent(const uint8_t *rgb, int8_t *latent) {
    mcu_encode_latent_rows(frame_row, (void *)rgb, latent);
}

void mcu_quantize(const int8_t *latent, int channels, uint8_t *sym) {
    const int n = mcu_geo.n;
    for (int c = 0; c < channels; c++)
        for (int i = c * n; i < (c + 1) * n; i++) sym[i] = quantize(c, latent[i]);
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

/* The symbols and video mode's reference are kept packed: rows y and y-1 of each are
 * unpacked as the coder reaches them. */
static uint8_t sym_rows[2][MCU_MAX_LW];
#if MCU_HAVE_INTER
static uint8_t ref_rows[2][MCU_MAX_LW];
#endif

static void unpack_row(const uint8_t *packed, int y, uint8_t *row) {
    const int lw = mcu_geo.lw;
    int x = 0, i = y * lw;
    for (; x < lw && (i & 3); x++, i++) row[x] = (uint8_t)mcu_packed_get(packed, i);     /* to a group's start */
    for (const uint8_t *q = packed + 3 * (i >> 2); x < lw; q += 3) {                   /* then whole groups */
        uint32_t v = q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16;
        for (int j = 0; j < 4 && x < lw; j++, x++, v >>= 6) row[x] = (uint8_t)(v & 63);
    }
}

/* Rows y and y-1 of a packed channel into row and up, for the coder that goes from the
 * last symbol to the first: at a new row the old row y becomes row y+1's "up". */
static void next_rows(const uint8_t *packed, int i, int y, uint8_t **row, uint8_t **up) {
    if (i == mcu_geo.n - 1) {
        unpack_row(packed, y, *row);
    } else {
        uint8_t *t = *row;
        *row = *up;
        *up = t;
    }
    if (y) unpack_row(packed, y - 1, *up);
}

/* out 0: a dry run, the length only */
static size_t code_channel(const uint16_t freq[8][64], const uint8_t *packed, const uint8_t *ref, int edge,
                           uint8_t *out) {
    /* rANS codes backwards: bytes are emitted last-first into out + 4, then reversed */
    uint8_t *emitted = out ? out + 4 : 0;
    uint32_t x = RANS_L;
    size_t n = 0;
    const int lw = mcu_geo.lw;
    int px = lw - 1;                   /* column of symbol i */
    uint8_t *row = sym_rows[0], *up = sym_rows[1];              /* rows y and y - 1 */
#if MCU_HAVE_INTER
    uint8_t *ref_row = ref_rows[0], *ref_up = ref_rows[1];      /* video mode: the same of the reference */
#endif
    for (int i = mcu_geo.n - 1; i >= 0; i--, px = px ? px - 1 : lw - 1) {
        if (px == lw - 1) {                  /* a new row y (coded last to first) */
            int y = i / lw;
            next_rows(packed, i, y, &row, &up);
#if MCU_HAVE_INTER
            if (ref) next_rows(ref, i, y, &ref_row, &ref_up);
#endif
        }
        const int s = row[px];
        int a = px ? row[px - 1] : edge;
        int b = i >= lw ? up[px] : edge;
        int r, ctx;
        if (!ref) {
            int c = (px && i >= lw) ? up[px - 1] : edge;
            int mn = a < b ? a : b, mx = a < b ? b : a;
            int pred = c >= mx ? mn : (c <= mn ? mx : a + b - c);
            r = (s - pred) & 63;
            ctx = activity_bucket((a > c ? a - c : c - a) + (b > c ? b - c : c - b));
        } else {
#if MCU_HAVE_INTER
            int ar = px ? ref_row[px - 1] : edge;
            int br = i >= lw ? ref_up[px] : edge;
            r = (s - ref_row[px]) & 63;
            ctx = temporal_bucket((a > ar ? a - ar : ar - a) + (b > br ? b - br : br - b));
#else
            r = ctx = 0;
#endif
        }
        uint32_t f = freq[ctx][r];
        uint32_t xmax = ((RANS_L >> RANS_PROB_BITS) << 8) * f;
        while (x >= xmax) {
            if (emitted) emitted[n] = (uint8_t)(x & 0xff);
            n++;
            x >>= 8;
        }
        x = ((x / f) << RANS_PROB_BITS) + (x % f) + cum_freq(freq[ctx], r);
    }
    if (!out) return 4 + n;
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

size_t mcu_code_channel(int ch, const uint8_t *packed, uint8_t *out) {
    stage_begin();
    size_t n = code_channel(mcu_rans_freq[ch], packed, 0, mcu_edge_symbol[ch], out);
    stage_end(MCU_STAGE_CODE);
    return n;
}

#if MCU_HAVE_INTER
size_t mcu_code_channel_inter(int ch, const uint8_t *packed, const uint8_t *ref, uint8_t *out) {
    stage_begin();
    size_t n = code_channel(mcu_inter_freq[ch], packed, ref, mcu_edge_symbol[ch], out);
    stage_end(MCU_STAGE_CODE);
    return n;
}
#endif

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void put_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out) {
    static uint8_t packed[MCU_CHANNELS * MCU_MAX_PACKED];
    if (channels < 0) channels = 0;
    if (channels > MCU_CHANNELS) channels = MCU_CHANNELS;
    mcu_encode_symbols_rows(frame_row, (void *)rgb, packed);
    const int version = mcu_bitstream_version();
    out[0] = 'M'; out[1] = 'C'; out[2] = (uint8_t)version; out[3] = (uint8_t)mcu_geo.shift;
    put_u32(out + 4, MCU_MODEL_ID);
    put_u32(out + 8, sequence);
    out[12] = MCU_CHANNELS;
    size_t head = MCU_HEADER_BYTES, entry = 3;
    if (version == 1) {
        out[13] = (uint8_t)mcu_geo.lh; out[14] = (uint8_t)mcu_geo.lw; out[15] = (uint8_t)channels;
    } else {                                      /* versions 3 and 4: the camera's size */
        out[13] = (uint8_t)channels;
        put_u16(out + 14, (uint32_t)mcu_geo.width);
        put_u16(out + 16, (uint32_t)mcu_geo.height);
        head = MCU_HEADER_BYTES_V3;
        entry = 4;
    }
    size_t pos = head + entry * (size_t)channels;
    for (int c = 0; c < channels; c++) {
        size_t len = mcu_code_channel(c, packed + c * MCU_PACKED_BYTES(mcu_geo.n), out + pos);
        uint8_t *e = out + head + entry * c;
        e[0] = (uint8_t)c; e[1] = (uint8_t)len; e[2] = (uint8_t)(len >> 8);
        if (entry == 4) e[3] = 0;                 /* intra */
        pos += len;
    }
    return pos;
}
