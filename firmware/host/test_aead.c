/* Host build of the firmware's ChaCha20-Poly1305 (core/mcu_aead.c), as a filter for the
 * Python tests: one request per line on stdin, hex fields ("-" for empty), one answer
 * per line on stdout.
 *   seal KEY NONCE AAD MSG       -> CIPHERTEXT TAG   (one-shot)
 *   sealchunks KEY NONCE AAD MSG -> CIPHERTEXT TAG   (incremental, in uneven pieces)
 *   open KEY NONCE AAD CT TAG    -> PLAINTEXT, or "reject"
 *   poly KEY MSG                 -> TAG
 *   block KEY COUNTER NONCE      -> 64 bytes of key stream (COUNTER in decimal) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcu_aead.h"

#define MAX 4096

static size_t unhex(const char *s, uint8_t *out) {
    if (!strcmp(s, "-")) return 0;
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void hex(const uint8_t *p, size_t n) {
    if (!n) putchar('-');
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

int main(void) {
    static char line[5 * 2 * MAX + 64], f[5][2 * MAX + 2];
    static uint8_t key[64], nonce[64], aad[MAX], msg[MAX], tag[64], out[MAX];
    while (fgets(line, sizeof line, stdin)) {
        char op[16];
        int nf = sscanf(line, "%15s %8193s %8193s %8193s %8193s %8193s", op, f[0], f[1], f[2], f[3], f[4]) - 1;
        if (!strcmp(op, "seal") && nf == 4) {
            unhex(f[0], key); unhex(f[1], nonce);
            size_t na = unhex(f[2], aad), n = unhex(f[3], msg);
            mcu_aead_seal(key, nonce, aad, na, msg, n, tag);
            hex(msg, n); putchar(' '); hex(tag, 16);
        } else if (!strcmp(op, "sealchunks") && nf == 4) {
            unhex(f[0], key); unhex(f[1], nonce);
            size_t na = unhex(f[2], aad), n = unhex(f[3], msg);
            mcu_aead_t st;
            mcu_aead_init(&st, key, nonce, aad, na);
            for (size_t i = 0, step = 1; i < n; i += step, step = step * 3 % 97 + 1)
                mcu_aead_crypt(&st, msg + i, out + i, step < n - i ? step : n - i, 0);
            mcu_aead_tag(&st, tag);
            hex(out, n); putchar(' '); hex(tag, 16);
        } else if (!strcmp(op, "open") && nf == 5) {
            unhex(f[0], key); unhex(f[1], nonce);
            size_t na = unhex(f[2], aad), n = unhex(f[3], msg);
            unhex(f[4], tag);
            if (mcu_aead_open(key, nonce, aad, na, msg, n, tag)) printf("reject"); else hex(msg, n);
        } else if (!strcmp(op, "poly") && nf == 2) {
            unhex(f[0], key);
            size_t n = unhex(f[1], msg);
            mcu_poly1305_t st;
            mcu_poly1305_init(&st, key);
            mcu_poly1305_update(&st, msg, n);
            mcu_poly1305_finish(&st, tag);
            hex(tag, 16);
        } else if (!strcmp(op, "block") && nf == 3) {
            unhex(f[0], key); unhex(f[2], nonce);
            mcu_chacha20_block(key, (uint32_t)strtoul(f[1], 0, 10), nonce, out);
            hex(out, 64);
        } else {
            printf("bad request");
        }
        putchar('\n');
        fflush(stdout);
    }
    return 0;
}
