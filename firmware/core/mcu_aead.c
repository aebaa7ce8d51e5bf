#include "mcu_aead.h"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

/* --- ChaCha20 (RFC 8439 2.1-2.3) ---------------------------------------------------- */
#define ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QR(a, b, c, d)                                        \
    a += b; d ^= a; d = ROTL(d, 16); c += d; b ^= c; b = ROTL(b, 12); \
    a += b; d ^= a; d = ROTL(d, 8);  c += d; b ^= c; b = ROTL(b, 7)

void mcu_chacha20_block(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12], uint8_t out[64]) {
    uint32_t in[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};   /* "expand 32-byte k" */
    for (int i = 0; i < 8; i++) in[4 + i] = le32(key + 4 * i);
    in[12] = counter;
    for (int i = 0; i < 3; i++) in[13 + i] = le32(nonce + 4 * i);
    uint32_t x[16];
    for (int i = 0; i < 16; i++) x[i] = in[i];
    for (int round = 0; round < 10; round++) {         /* 20 rounds: column, then diagonal */
        QR(x[0], x[4], x[8], x[12]); QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]); QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]); QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]); QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) put_le32(out + 4 * i, x[i] + in[i]);
}

/* --- Poly1305 (RFC 8439 2.5): h = (h + block) * r mod 2^130 - 5, in five 26-bit limbs -- */
#define M26 0x3ffffffu

void mcu_poly1305_init(mcu_poly1305_t *st, const uint8_t key[32]) {
    /* r, clamped as 2.5 says (top four bits of bytes 3, 7, 11, 15 and the bottom two of
     * 4, 8, 12 cleared), split into limbs */
    uint32_t t0 = le32(key), t1 = le32(key + 4), t2 = le32(key + 8), t3 = le32(key + 12);
    st->r[0] = t0 & 0x3ffffffu;
    st->r[1] = ((t0 >> 26) | (t1 << 6)) & 0x3ffff03u;
    st->r[2] = ((t1 >> 20) | (t2 << 12)) & 0x3ffc0ffu;
    st->r[3] = ((t2 >> 14) | (t3 << 18)) & 0x3f03fffu;
    st->r[4] = (t3 >> 8) & 0x00fffffu;
    for (int i = 0; i < 5; i++) st->h[i] = 0;
    for (int i = 0; i < 4; i++) st->pad[i] = le32(key + 16 + 4 * i);
    st->buf_len = 0;
}

static void poly_block(mcu_poly1305_t *st, const uint8_t m[16], uint32_t hibit) {
    const uint32_t r0 = st->r[0], r1 = st->r[1], r2 = st->r[2], r3 = st->r[3], r4 = st->r[4];
    const uint32_t s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;    /* 2^130 = 5 (mod p) */
    uint32_t h0 = st->h[0] + (le32(m) & M26);
    uint32_t h1 = st->h[1] + ((le32(m + 3) >> 2) & M26);
    uint32_t h2 = st->h[2] + ((le32(m + 6) >> 4) & M26);
    uint32_t h3 = st->h[3] + ((le32(m + 9) >> 6) & M26);
    uint32_t h4 = st->h[4] + ((le32(m + 12) >> 8) | hibit);
    uint64_t d0 = (uint64_t)h0 * r0 + (uint64_t)h1 * s4 + (uint64_t)h2 * s3 + (uint64_t)h3 * s2 + (uint64_t)h4 * s1;
    uint64_t d1 = (uint64_t)h0 * r1 + (uint64_t)h1 * r0 + (uint64_t)h2 * s4 + (uint64_t)h3 * s3 + (uint64_t)h4 * s2;
    uint64_t d2 = (uint64_t)h0 * r2 + (uint64_t)h1 * r1 + (uint64_t)h2 * r0 + (uint64_t)h3 * s4 + (uint64_t)h4 * s3;
    uint64_t d3 = (uint64_t)h0 * r3 + (uint64_t)h1 * r2 + (uint64_t)h2 * r1 + (uint64_t)h3 * r0 + (uint64_t)h4 * s4;
    uint64_t d4 = (uint64_t)h0 * r4 + (uint64_t)h1 * r3 + (uint64_t)h2 * r2 + (uint64_t)h3 * r1 + (uint64_t)h4 * r0;
    uint32_t c;
    c = (uint32_t)(d0 >> 26); h0 = (uint32_t)d0 & M26; d1 += c;
    c = (uint32_t)(d1 >> 26); h1 = (uint32_t)d1 & M26; d2 += c;
    c = (uint32_t)(d2 >> 26); h2 = (uint32_t)d2 & M26; d3 += c;
    c = (uint32_t)(d3 >> 26); h3 = (uint32_t)d3 & M26; d4 += c;
    c = (uint32_t)(d4 >> 26); h4 = (uint32_t)d4 & M26;
    h0 += c * 5; c = h0 >> 26; h0 &= M26; h1 += c;
    st->h[0] = h0; st->h[1] = h1; st->h[2] = h2; st->h[3] = h3; st->h[4] = h4;
}

void mcu_poly1305_update(mcu_poly1305_t *st, const uint8_t *m, size_t n) {
    if (st->buf_len) {
        while (n && st->buf_len < 16) { st->buf[st->buf_len++] = *m++; n--; }
        if (st->buf_len < 16) return;
        poly_block(st, st->buf, 1u << 24);
        st->buf_len = 0;
    }
    for (; n >= 16; m += 16, n -= 16) poly_block(st, m, 1u << 24);
    while (n--) st->buf[st->buf_len++] = *m++;
}

void mcu_poly1305_finish(mcu_poly1305_t *st, uint8_t tag[16]) {
    if (st->buf_len) {                      /* the last, short block: a 1 byte, then zeros */
        st->buf[st->buf_len++] = 1;
        while (st->buf_len < 16) st->buf[st->buf_len++] = 0;
        poly_block(st, st->buf, 0);
    }
    uint32_t h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4], c;
    c = h1 >> 26; h1 &= M26; h2 += c;
    c = h2 >> 26; h2 &= M26; h3 += c;
    c = h3 >> 26; h3 &= M26; h4 += c;
    c = h4 >> 26; h4 &= M26; h0 += c * 5;
    c = h0 >> 26; h0 &= M26; h1 += c;
    /* g = h + 5 - 2^130: if it does not go negative, h >= p and g is h mod p */
    uint32_t g0 = h0 + 5; c = g0 >> 26; g0 &= M26;
    uint32_t g1 = h1 + c; c = g1 >> 26; g1 &= M26;
    uint32_t g2 = h2 + c; c = g2 >> 26; g2 &= M26;
    uint32_t g3 = h3 + c; c = g3 >> 26; g3 &= M26;
    uint32_t g4 = h4 + c - (1u << 26);
    uint32_t keep_g = (g4 >> 31) - 1;       /* all ones when g4 >= 0, constant time */
    h0 = (h0 & ~keep_g) | (g0 & keep_g);
    h1 = (h1 & ~keep_g) | (g1 & keep_g);
    h2 = (h2 & ~keep_g) | (g2 & keep_g);
    h3 = (h3 & ~keep_g) | (g3 & keep_g);
    h4 = (h4 & ~keep_g) | (g4 & keep_g);
    /* to 4 x 32 bits (mod 2^128), plus s */
    uint32_t w[4] = {h0 | (h1 << 26), (h1 >> 6) | (h2 << 20), (h2 >> 12) | (h3 << 14), (h3 >> 18) | (h4 << 8)};
    uint64_t f = 0;
    for (int i = 0; i < 4; i++) {
        f += (uint64_t)w[i] + st->pad[i];
        put_le32(tag + 4 * i, (uint32_t)f);
        f >>= 32;
    }
}

/* --- AEAD (RFC 8439 2.8) ----------------------------------------------------------- */
static const uint8_t zeros[16];

void mcu_aead_init(mcu_aead_t *st, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len) {
    for (int i = 0; i < 32; i++) st->key[i] = key[i];
    for (int i = 0; i < 12; i++) st->nonce[i] = nonce[i];
    mcu_chacha20_block(key, 0, nonce, st->stream);      /* block 0: the one-time Poly1305 key */
    mcu_poly1305_init(&st->mac, st->stream);
    mcu_poly1305_update(&st->mac, aad, aad_len);
    if (aad_len % 16) mcu_poly1305_update(&st->mac, zeros, 16 - aad_len % 16);
    st->aad_len = aad_len;
    st->text_len = 0;
    st->counter = 1;
    st->used = 64;
}

void mcu_aead_crypt(mcu_aead_t *st, const uint8_t *in, uint8_t *out, size_t n, int decrypt) {
    if (decrypt) mcu_poly1305_update(&st->mac, in, n);
    for (size_t i = 0; i < n; i++) {
        if (st->used == 64) {
            mcu_chacha20_block(st->key, st->counter++, st->nonce, st->stream);
            st->used = 0;
        }
        out[i] = in[i] ^ st->stream[st->used++];
    }
    if (!decrypt) mcu_poly1305_update(&st->mac, out, n);
    st->text_len += n;
}

void mcu_aead_tag(mcu_aead_t *st, uint8_t tag[16]) {
    if (st->text_len % 16) mcu_poly1305_update(&st->mac, zeros, 16 - st->text_len % 16);
    uint8_t lens[16];
    put_le32(lens, (uint32_t)st->aad_len);
    put_le32(lens + 4, (uint32_t)(st->aad_len >> 32));
    put_le32(lens + 8, (uint32_t)st->text_len);
    put_le32(lens + 12, (uint32_t)(st->text_len >> 32));
    mcu_poly1305_update(&st->mac, lens, 16);
    mcu_poly1305_finish(&st->mac, tag);
}

void mcu_aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, uint8_t *buf,
                   size_t n, uint8_t tag[16]) {
    mcu_aead_t st;
    mcu_aead_init(&st, key, nonce, aad, aad_len);
    mcu_aead_crypt(&st, buf, buf, n, 0);
    mcu_aead_tag(&st, tag);
}

int mcu_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, uint8_t *buf,
                  size_t n, const uint8_t tag[16]) {
    /* the MAC first, over the ciphertext; decrypt only what authenticated */
    mcu_aead_t st;
    mcu_aead_init(&st, key, nonce, aad, aad_len);
    mcu_poly1305_update(&st.mac, buf, n);
    st.text_len = n;
    uint8_t want[16];
    mcu_aead_tag(&st, want);
    uint8_t diff = 0;
    for (int i = 0; i < 16; i++) diff |= (uint8_t)(want[i] ^ tag[i]);
    if (diff) return -1;
    mcu_aead_init(&st, key, nonce, aad, aad_len);
    mcu_aead_crypt(&st, buf, buf, n, 1);
    return 0;
}
