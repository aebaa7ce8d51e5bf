/* See mcu_jpeg.h.  Tables from ITU T.81 Annex K; the DCT is the Arai-Agui-Nakajima
 * factorisation with 13-bit constants, whose output scale is folded into the
 * quantiser's reciprocals. */
#include "mcu_jpeg.h"

/* Helium paths for the colour conversion, the DCT and the quantiser on cores that have
 * MVE (or, with -DMCU_JPEG_MVE=1, on the C models of mcu_mve.h for the host tests):
 * the same integer arithmetic in 32-bit lanes, so the files are byte-identical. */
#ifndef MCU_JPEG_MVE
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define MCU_JPEG_MVE 1
#else
#define MCU_JPEG_MVE 0
#endif
#endif
#if MCU_JPEG_MVE
#include "mcu_mve.h"
#endif

#define W (((MCU_MAX_WIDTH + 15) / 16) * 16)      /* the buffers' row length: the widest MCU row */
static int frame_w, frame_h, mcus_x, mcus_y;    /* this frame: size, MCUs of 16x16 pixels */

static const uint8_t zigzag[64] = {   /* zigzag index -> natural (row-major) index */
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

static const uint8_t base_quant[2][64] = {    /* K.1 luminance, K.2 chrominance, natural order */
    {16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99},
    {17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
     47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99}};

/* K.3: code counts per length 1..16, then the symbols */
static const uint8_t dc_bits[2][16] = {{0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
                                       {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}};
static const uint8_t dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const uint8_t ac_bits[2][16] = {{0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d},
                                       {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77}};
static const uint8_t ac_vals[2][162] = {
    {0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71,
     0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72,
     0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37,
     0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
     0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
     0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
     0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
     0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
     0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    {0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22,
     0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1,
     0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36,
     0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
     0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
     0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a,
     0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
     0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
     0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa}};

/* AAN output scale per frequency, sqrt(2) cos(k pi / 16) (1 for k = 0), in Q14 */
static const uint16_t aan_q14[8] = {16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520};

/* --- state (static: no malloc) -------------------------------------------------------- */
static uint8_t ybuf[16][W];                    /* one band of 16 luma rows */
static uint16_t cbuf[2][8][W / 2];             /* Cb, Cr: sums of 2x2 pixels */
static uint8_t row[W * 3];                     /* the camera row being read */
static uint8_t qtable[2][64];                  /* quantisers, natural order (for DQT) */
static uint32_t recip[2][64];                  /* 2^41 / (q * aan(u) * aan(v)): Q16 reciprocals */
static uint16_t dc_code[2][12], ac_code[2][256];
static uint8_t dc_size[2][12], ac_size[2][256];
static int huff_ready;

static struct {
    mcu_byte_sink sink;
    void *ctx;
    uint8_t buf[64];
    size_t n, total;
    uint32_t bits;
    int nbits;
} out;

static void emit(uint8_t b) {
    out.buf[out.n++] = b;
    if (out.n == sizeof out.buf) {
        out.sink(out.ctx, out.buf, out.n);
        out.total += out.n;
        out.n = 0;
    }
}

static void emit16(uint16_t v) { emit((uint8_t)(v >> 8)); emit((uint8_t)v); }

static void put_bits(uint32_t code, int size) {    /* size <= 16 */
    out.bits = (out.bits << size) | (code & ((1u << size) - 1u));
    out.nbits += size;
    while (out.nbits >= 8) {
        uint8_t b = (uint8_t)(out.bits >> (out.nbits - 8));
        emit(b);
        if (b == 0xFF) emit(0);                          /* byte stuffing */
        out.nbits -= 8;
    }
}

/* Annex C: canonical codes from the counts per length */
static void make_codes(const uint8_t bits[16], const uint8_t *vals, uint16_t *code, uint8_t *size) {
    uint16_t c = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        for (int i = 0; i < bits[len - 1]; i++, k++) {
            code[vals[k]] = c++;
            size[vals[k]] = (uint8_t)len;
        }
        c <<= 1;
    }
}

static void set_quality(int quality) {
    if (quality < 1) quality = 1;
    if (quality > 100) quality = 100;
    int scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;    /* libjpeg's scaling */
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 64; i++) {
            int q = (base_quant[t][i] * scale + 50) / 100;
            q = q < 1 ? 1 : (q > 255 ? 255 : q);
            qtable[t][i] = (uint8_t)q;
            uint64_t d = (uint64_t)q * aan_q14[i >> 3] * aan_q14[i & 7];
            recip[t][i] = (uint32_t)(((1ull << 41) + d / 2) / d);
        }
}

/* --- headers ---------------------------------------------------------------------------- */
static void write_headers(void) {
    static const uint8_t jfif[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
    for (size_t i = 0; i < sizeof jfif; i++) emit(jfif[i]);
    for (int t = 0; t < 2; t++) {                    /* DQT, in zigzag order */
        emit16(0xFFDB); emit16(67); emit((uint8_t)t);
        for (int i = 0; i < 64; i++) emit(qtable[t][zigzag[i]]);
    }
    emit16(0xFFC0); emit16(17); emit(8); emit16((uint16_t)frame_h); emit16((uint16_t)frame_w); emit(3);    /* SOF0 */
    emit(1); emit(0x22); emit(0);                    /* Y: 2x2 sampling, table 0 */
    emit(2); emit(0x11); emit(1);
    emit(3); emit(0x11); emit(1);
    for (int t = 0; t < 2; t++) {                    /* DHT: DC then AC */
        emit16(0xFFC4); emit16(3 + 16 + 12); emit((uint8_t)t);
        for (int i = 0; i < 16; i++) emit(dc_bits[t][i]);
        for (int i = 0; i < 12; i++) emit(dc_vals[i]);
        emit16(0xFFC4); emit16(3 + 16 + 162); emit((uint8_t)(0x10 | t));
        for (int i = 0; i < 16; i++) emit(ac_bits[t][i]);
        for (int i = 0; i < 162; i++) emit(ac_vals[t][i]);
    }
    emit16(0xFFDA); emit16(12); emit(3);             /* SOS */
    emit(1); emit(0x00); emit(2); emit(0x11); emit(3); emit(0x11);
    emit(0); emit(63); emit(0);
}

/* --- DCT, quantisation, entropy coding ------------------------------------------------- */
#define C_0707 5793      /* cos(pi/4), Q13 */
#define C_0382 3135      /* cos(3 pi / 8) */
#define C_0541 4433      /* cos(pi/8) - cos(3 pi / 8) */
#define C_1306 10703     /* cos(pi/8) + cos(3 pi / 8) */
#define MUL(x, c) (((x) * (c) + 4096) >> 13)

#if !MCU_JPEG_MVE
/* in place, 8 values at stride s: AAN's 1-D DCT, output scaled by 8 * aan(k) / sqrt(8) ... per pass */
static void fdct8(int32_t *d, int s) {
    int32_t t0 = d[0] + d[7 * s], t7 = d[0] - d[7 * s], t1 = d[s] + d[6 * s], t6 = d[s] - d[6 * s];
    int32_t t2 = d[2 * s] + d[5 * s], t5 = d[2 * s] - d[5 * s], t3 = d[3 * s] + d[4 * s], t4 = d[3 * s] - d[4 * s];
    int32_t t10 = t0 + t3, t13 = t0 - t3, t11 = t1 + t2, t12 = t1 - t2;
    d[0] = t10 + t11;
    d[4 * s] = t10 - t11;
    int32_t z1 = MUL(t12 + t13, C_0707);
    d[2 * s] = t13 + z1;
    d[6 * s] = t13 - z1;
    t10 = t4 + t5;
    t11 = t5 + t6;
    t12 = t6 + t7;
    int32_t z5 = MUL(t10 - t12, C_0382), z2 = MUL(t10, C_0541) + z5, z4 = MUL(t12, C_1306) + z5;
    int32_t z3 = MUL(t11, C_0707), z11 = t7 + z3, z13 = t7 - z3;
    d[5 * s] = z13 + z2;
    d[3 * s] = z13 - z2;
    d[s] = z11 + z4;
    d[7 * s] = z11 - z4;
}
#endif

static int nbits(uint32_t v) { return v ? 32 - __builtin_clz(v) : 0; }

/* one block's quantised coefficients, in zigzag order -> Huffman codes.  This and
 * transform_block stay out of line: inlined into the band loop, GCC 12 ran short of
 * registers there (+5 % instructions on the M7). */
static __attribute__((noinline)) void code_block(const int32_t q[64], int t, int32_t *dc_pred) {
    int32_t diff = q[0] - *dc_pred;
    *dc_pred = q[0];
    int s = nbits((uint32_t)(diff < 0 ? -diff : diff));
    put_bits(dc_code[t][s], dc_size[t][s]);
    if (s) put_bits((uint32_t)(diff < 0 ? diff - 1 : diff), s);
    int run = 0;
    for (int i = 1; i < 64; i++) {
        int32_t v = q[i];
        if (!v) {
            run++;
            continue;
        }
        for (; run > 15; run -= 16) put_bits(ac_code[t][0xF0], ac_size[t][0xF0]);
        s = nbits((uint32_t)(v < 0 ? -v : v));
        int sym = (run << 4) | s;
        put_bits(ac_code[t][sym], ac_size[t][sym]);
        put_bits((uint32_t)(v < 0 ? v - 1 : v), s);
        run = 0;
    }
    if (run) put_bits(ac_code[t][0x00], ac_size[t][0x00]);
}

#if !MCU_JPEG_MVE
/* RGB row r of the band -> Y, and the 2x2 sums of Cb and Cr */
static void convert_row(int r) {
    uint16_t *cb = cbuf[0][r >> 1], *cr = cbuf[1][r >> 1];
    for (int x = 0; x < 16 * mcus_x; x++) {
        int32_t R = row[3 * x], G = row[3 * x + 1], B = row[3 * x + 2];
        ybuf[r][x] = (uint8_t)((19595 * R + 38470 * G + 7471 * B + 32768) >> 16);
        int32_t u = (-11059 * R - 21709 * G + 32768 * B + (128 << 16) + 32767) >> 16;
        int32_t v = (32768 * R - 27439 * G - 5329 * B + (128 << 16) + 32767) >> 16;
        if ((r & 1) == 0 && (x & 1) == 0) {
            cb[x >> 1] = (uint16_t)u;
            cr[x >> 1] = (uint16_t)v;
        } else {
            cb[x >> 1] = (uint16_t)(cb[x >> 1] + u);
            cr[x >> 1] = (uint16_t)(cr[x >> 1] + v);
        }
    }
}

/* block b of MCU m (0..3 luma, 4 Cb, 5 Cr) -> DCT -> quantised, zigzag order */
static __attribute__((noinline)) void transform_block(int m, int b, int32_t q[64]) {
    int32_t blk[64];
    if (b < 4) {
        const int y0 = 8 * (b >> 1), x0 = 16 * m + 8 * (b & 1);
        for (int i = 0; i < 64; i++) blk[i] = ybuf[y0 + (i >> 3)][x0 + (i & 7)] - 128;
    } else {
        for (int i = 0; i < 64; i++) blk[i] = ((cbuf[b - 4][i >> 3][8 * m + (i & 7)] + 2) >> 2) - 128;
    }
    for (int i = 0; i < 8; i++) fdct8(blk + 8 * i, 1);
    for (int i = 0; i < 8; i++) fdct8(blk + i, 8);
    const uint32_t *rq = recip[b < 4 ? 0 : 1];
    for (int i = 0; i < 64; i++) {
        int32_t v = blk[zigzag[i]];
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        int32_t mag = (int32_t)((a * rq[zigzag[i]] + 32768u) >> 16);
        q[i] = v < 0 ? -mag : mag;
    }
}

static void prepare_tables(void) {}
#else
/* Helium: 8 pixels, 4 rows or columns of a block, or 4 coefficients per few
 * instructions.  The DCT runs along the rows first, as the scalar one does (its
 * rounding makes the order matter): lanes are 4 rows, gathered a column at a time; its
 * output is stored transposed, so the column pass gathers the same way and writes the
 * coefficients in natural order. */
static uint32_t zz_pos[64];           /* natural index -> zigzag position */

static void prepare_tables(void) {
    for (int p = 0; p < 64; p++) zz_pos[zigzag[p]] = (uint32_t)p;
}

static void convert_row(int r) {
    static const uint32_t even[4] = {0, 6, 12, 18}, odd[4] = {3, 9, 15, 21};
    static const uint32_t y_even[4] = {0, 2, 4, 6}, y_odd[4] = {1, 3, 5, 7};
    const uint32x4_t off[2] = {vldrwq_u32(even), vldrwq_u32(odd)}, ypos[2] = {vldrwq_u32(y_even), vldrwq_u32(y_odd)};
    int16_t *cb = (int16_t *)cbuf[0][r >> 1], *cr = (int16_t *)cbuf[1][r >> 1];
    for (int x = 0; x < 16 * mcus_x; x += 8) {
        const uint8_t *p = row + 3 * x;
        int32x4_t u = vdupq_n_s32(0), v = vdupq_n_s32(0);
        for (int e = 0; e < 2; e++) {                   /* even pixels, then odd */
            int32x4_t R = vreinterpretq_s32_u32(vldrbq_gather_offset_u32(p, off[e]));
            int32x4_t G = vreinterpretq_s32_u32(vldrbq_gather_offset_u32(p + 1, off[e]));
            int32x4_t B = vreinterpretq_s32_u32(vldrbq_gather_offset_u32(p + 2, off[e]));
            int32x4_t y = vmlaq_n_s32(vmlaq_n_s32(vmulq_n_s32(R, 19595), G, 38470), B, 7471);
            vstrbq_scatter_offset_s32((int8_t *)ybuf[r] + x, ypos[e], vshrq_n_s32(vaddq_n_s32(y, 32768), 16));
            int32x4_t cu = vmlaq_n_s32(vmlaq_n_s32(vmulq_n_s32(B, 32768), R, -11059), G, -21709);
            int32x4_t cv = vmlaq_n_s32(vmlaq_n_s32(vmulq_n_s32(R, 32768), G, -27439), B, -5329);
            u = vaddq_s32(u, vshrq_n_s32(vaddq_n_s32(cu, (128 << 16) + 32767), 16));
            v = vaddq_s32(v, vshrq_n_s32(vaddq_n_s32(cv, (128 << 16) + 32767), 16));
        }
        if (r & 1) {
            u = vaddq_s32(u, vldrhq_s32(cb + x / 2));
            v = vaddq_s32(v, vldrhq_s32(cr + x / 2));
        }
        vstrhq_s32(cb + x / 2, u);
        vstrhq_s32(cr + x / 2, v);
    }
}

#define MULV(x, c) vshrq_n_s32(vaddq_n_s32(vmulq_n_s32((x), (c)), 4096), 13)

/* fdct8 on four columns at once */
static inline __attribute__((always_inline)) void fdct8_v(int32x4_t d[8]) {
    int32x4_t t0 = vaddq_s32(d[0], d[7]), t7 = vsubq_s32(d[0], d[7]);
    int32x4_t t1 = vaddq_s32(d[1], d[6]), t6 = vsubq_s32(d[1], d[6]);
    int32x4_t t2 = vaddq_s32(d[2], d[5]), t5 = vsubq_s32(d[2], d[5]);
    int32x4_t t3 = vaddq_s32(d[3], d[4]), t4 = vsubq_s32(d[3], d[4]);
    int32x4_t t10 = vaddq_s32(t0, t3), t13 = vsubq_s32(t0, t3), t11 = vaddq_s32(t1, t2), t12 = vsubq_s32(t1, t2);
    d[0] = vaddq_s32(t10, t11);
    d[4] = vsubq_s32(t10, t11);
    int32x4_t z1 = MULV(vaddq_s32(t12, t13), C_0707);
    d[2] = vaddq_s32(t13, z1);
    d[6] = vsubq_s32(t13, z1);
    t10 = vaddq_s32(t4, t5);
    t11 = vaddq_s32(t5, t6);
    t12 = vaddq_s32(t6, t7);
    int32x4_t z5 = MULV(vsubq_s32(t10, t12), C_0382);
    int32x4_t z2 = vaddq_s32(MULV(t10, C_0541), z5), z4 = vaddq_s32(MULV(t12, C_1306), z5);
    int32x4_t z3 = MULV(t11, C_0707), z11 = vaddq_s32(t7, z3), z13 = vsubq_s32(t7, z3);
    d[5] = vaddq_s32(z13, z2);
    d[3] = vsubq_s32(z13, z2);
    d[1] = vaddq_s32(z11, z4);
    d[7] = vsubq_s32(z11, z4);
}

static __attribute__((noinline)) void transform_block(int m, int b, int32_t q[64]) {
    static const uint32_t by8[4] = {0, 8, 16, 24}, by_w[4] = {0, W, 2 * W, 3 * W}, by_w2[4] = {0, W / 2, W, 3 * W / 2};
    int32_t rows[64], coef[64];
    int32x4_t d[8];
    const uint32x4_t stride8 = vldrwq_u32(by8);
    for (int h = 0; h < 2; h++) {                       /* along rows 4h .. 4h+3 */
        if (b < 4) {
            const uint8_t *src = &ybuf[8 * (b >> 1) + 4 * h][16 * m + 8 * (b & 1)];
            const uint32x4_t off = vldrwq_u32(by_w);
            for (int c = 0; c < 8; c++)
                d[c] = vsubq_n_s32(vreinterpretq_s32_u32(vldrbq_gather_offset_u32(src + c, off)), 128);
        } else {
            const uint16_t *src = &cbuf[b - 4][4 * h][8 * m];
            const uint32x4_t off = vldrwq_u32(by_w2);
            for (int c = 0; c < 8; c++) {
                int32x4_t x = vreinterpretq_s32_u32(vldrhq_gather_shifted_offset_u32(src + c, off));
                d[c] = vsubq_n_s32(vshrq_n_s32(vaddq_n_s32(x, 2), 2), 128);
            }
        }
        fdct8_v(d);
        for (int v = 0; v < 8; v++) vstrwq_s32(rows + 8 * v + 4 * h, d[v]);    /* transposed */
    }
    for (int h = 0; h < 2; h++) {                       /* down columns 4h .. 4h+3 */
        for (int r = 0; r < 8; r++) d[r] = vldrwq_gather_shifted_offset_s32(rows + 32 * h + r, stride8);
        fdct8_v(d);
        for (int u = 0; u < 8; u++) vstrwq_s32(coef + 8 * u + 4 * h, d[u]);
    }
    const uint32_t *rq = recip[b < 4 ? 0 : 1];
    for (int i = 0; i < 64; i += 4) {                   /* quantise, scatter to zigzag order */
        int32x4_t x = vldrwq_s32(coef + i);
        uint32x4_t a = vmulq_u32(vreinterpretq_u32_s32(vabsq_s32(x)), vldrwq_u32(rq + i));
        int32x4_t mag = vreinterpretq_s32_u32(vshrq_n_u32(vaddq_n_u32(a, 32768u), 16));
        vstrwq_scatter_shifted_offset_s32(q, vldrwq_u32(zz_pos + i), vpselq_s32(vnegq_s32(mag), mag, vcmpltq_n_s32(x, 0)));
    }
}
#endif

/* --- the frame ------------------------------------------------------------------------- */
size_t mcu_jpeg_encode_rows(mcu_row_reader read_row, void *row_ctx, int width, int height, int quality,
                            mcu_byte_sink sink, void *sink_ctx) {
    if (width < 1 || height < 1 || width > MCU_MAX_WIDTH || height > 65535) return 0;
    frame_w = width;
    frame_h = height;
    mcus_x = (width + 15) / 16;
    mcus_y = (height + 15) / 16;
    if (!huff_ready) {
        for (int t = 0; t < 2; t++) {
            make_codes(dc_bits[t], dc_vals, dc_code[t], dc_size[t]);
            make_codes(ac_bits[t], ac_vals[t], ac_code[t], ac_size[t]);
        }
        huff_ready = 1;
    }
    set_quality(quality);
    prepare_tables();
    out.sink = sink;
    out.ctx = sink_ctx;
    out.n = out.total = 0;
    out.bits = 0;
    out.nbits = 0;
    write_headers();
    int32_t pred[3] = {0, 0, 0};
    int32_t q[64];
    for (int band = 0; band < mcus_y; band++) {
        for (int r = 0; r < 16; r++) {
            /* past the last row, the row buffer still holds it: repeated */
            if (16 * band + r < height && read_row(row_ctx, 16 * band + r, row)) return 0;
            for (int x = width; x < 16 * mcus_x; x++)      /* the last column, repeated */
                for (int c = 0; c < 3; c++) row[3 * x + c] = row[3 * (width - 1) + c];
            convert_row(r);
        }
        for (int m = 0; m < mcus_x; m++)
            for (int b = 0; b < 6; b++) {            /* four luma blocks, then Cb, Cr */
                transform_block(m, b, q);
                code_block(q, b < 4 ? 0 : 1, &pred[b < 4 ? 0 : b - 3]);
            }
    }
    if (out.nbits) put_bits(0x7F, 8 - out.nbits);    /* pad the last byte with ones */
    emit16(0xFFD9);
    if (out.n) sink(sink_ctx, out.buf, out.n);
    return out.total + out.n;
}
