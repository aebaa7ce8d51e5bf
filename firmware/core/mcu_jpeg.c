/* See mcu_jpeg.h.  Tables from ITU T.81 Annex K; the DCT is the Arai-Agui-Nakajima
 * factorisation with 13-bit constants, whose output scale is folded into the
 * quantiser's reciprocals. */
#include "mcu_jpeg.h"

#define W MCU_IMAGE_SIZE
#define MCUS (W / 16)                 /* 14 x 14 MCUs of 16x16 pixels */

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
    emit16(0xFFC0); emit16(17); emit(8); emit16(W); emit16(W); emit(3);    /* SOF0 */
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

static int nbits(uint32_t v) { return v ? 32 - __builtin_clz(v) : 0; }

static void code_block(int32_t blk[64], int t, int32_t *dc_pred) {
    for (int i = 0; i < 8; i++) fdct8(blk + 8 * i, 1);
    for (int i = 0; i < 8; i++) fdct8(blk + i, 8);
    int32_t q[64];
    for (int i = 0; i < 64; i++) {
        int32_t v = blk[zigzag[i]];
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        int32_t m = (int32_t)((a * recip[t][zigzag[i]] + 32768u) >> 16);
        q[i] = v < 0 ? -m : m;
    }
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

/* --- the frame ------------------------------------------------------------------------- */
size_t mcu_jpeg_encode_rows(mcu_row_reader read_row, void *row_ctx, int quality, mcu_byte_sink sink,
                            void *sink_ctx) {
    if (!huff_ready) {
        for (int t = 0; t < 2; t++) {
            make_codes(dc_bits[t], dc_vals, dc_code[t], dc_size[t]);
            make_codes(ac_bits[t], ac_vals[t], ac_code[t], ac_size[t]);
        }
        huff_ready = 1;
    }
    set_quality(quality);
    out.sink = sink;
    out.ctx = sink_ctx;
    out.n = out.total = 0;
    out.bits = 0;
    out.nbits = 0;
    write_headers();
    int32_t pred[3] = {0, 0, 0};
    int32_t blk[64];
    for (int band = 0; band < MCUS; band++) {
        for (int r = 0; r < 16; r++) {               /* RGB -> Y, and 2x2 sums of Cb, Cr */
            if (read_row(row_ctx, 16 * band + r, row)) return 0;
            uint16_t *cb = cbuf[0][r >> 1], *cr = cbuf[1][r >> 1];
            for (int x = 0; x < W; x++) {
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
        for (int m = 0; m < MCUS; m++) {
            for (int b = 0; b < 4; b++) {            /* four luma blocks, then Cb, Cr */
                const int y0 = 8 * (b >> 1), x0 = 16 * m + 8 * (b & 1);
                for (int i = 0; i < 64; i++) blk[i] = ybuf[y0 + (i >> 3)][x0 + (i & 7)] - 128;
                code_block(blk, 0, &pred[0]);
            }
            for (int c = 0; c < 2; c++) {
                for (int i = 0; i < 64; i++) blk[i] = ((cbuf[c][i >> 3][8 * m + (i & 7)] + 2) >> 2) - 128;
                code_block(blk, 1, &pred[1 + c]);
            }
        }
    }
    if (out.nbits) put_bits(0x7F, 8 - out.nbits);    /* pad the last byte with ones */
    emit16(0xFFD9);
    if (out.n) sink(sink_ctx, out.buf, out.n);
    return out.total + out.n;
}
