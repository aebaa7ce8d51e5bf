/* ChaCha20-Poly1305 (RFC 8439), written from the RFC for the sealed serial link
 * (protocol 2, docs/serial-protocol.md).  Portable C99, no malloc, no tables; 32-bit
 * limbs with 32x32->64 multiplies, which every Cortex-M3 and up has.  Checked against the
 * RFC's test vectors and against Python's `cryptography` by the host tests. */
#ifndef MCU_AEAD_H
#define MCU_AEAD_H
#include <stddef.h>
#include <stdint.h>

#define MCU_AEAD_KEY 32
#define MCU_AEAD_NONCE 12
#define MCU_AEAD_TAG 16

/* The ChaCha20 block function (RFC 8439 2.3): 64 bytes of key stream. */
void mcu_chacha20_block(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12], uint8_t out[64]);

/* Poly1305 (RFC 8439 2.5), incremental. */
typedef struct {
    uint32_t r[5], h[5], pad[4];
    uint8_t buf[16];
    size_t buf_len;
} mcu_poly1305_t;
void mcu_poly1305_init(mcu_poly1305_t *st, const uint8_t key[32]);
void mcu_poly1305_update(mcu_poly1305_t *st, const uint8_t *m, size_t n);
void mcu_poly1305_finish(mcu_poly1305_t *st, uint8_t tag[16]);

/* AEAD_CHACHA20_POLY1305 (RFC 8439 2.8), incremental so that a packet can be sealed as
 * it streams out: init (with the whole AAD), then crypt any number of times, then the
 * tag.  `decrypt` selects whether the MAC runs over the input (opening) or the output
 * (sealing). */
typedef struct {
    uint8_t key[32], nonce[12], stream[64];
    uint32_t counter;
    size_t used;                /* key stream bytes used of `stream` */
    uint64_t aad_len, text_len;
    mcu_poly1305_t mac;
} mcu_aead_t;
void mcu_aead_init(mcu_aead_t *st, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len);
void mcu_aead_crypt(mcu_aead_t *st, const uint8_t *in, uint8_t *out, size_t n, int decrypt);
void mcu_aead_tag(mcu_aead_t *st, uint8_t tag[16]);

/* One-shot, in place.  mcu_aead_open returns 0 and decrypts only if the tag is right
 * (compared in constant time); else returns -1 and leaves buf as it was. */
void mcu_aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, uint8_t *buf,
                   size_t n, uint8_t tag[16]);
int mcu_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, uint8_t *buf,
                  size_t n, const uint8_t tag[16]);

#endif
