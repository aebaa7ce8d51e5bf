#include "mcu_link.h"

#include "mcu_aead.h"

static const uint8_t handshake_aad[15] = {'m', 'c', 'u', 'c', 'o', 'd', 'e', 'r', '-', 'l', 'i', 'n', 'k', '-', '2'};

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* the ChaCha20 block function as a PRF on a 16-byte input (counter | nonce) */
static void prf(const uint8_t key[32], const uint8_t in[16], uint8_t out[64]) {
    mcu_chacha20_block(key, le32(in), in + 4, out);
}

void mcu_link_nonce(uint32_t counter, uint8_t nonce[12]) {
    static const uint8_t tail[8] = {'M', 'C', 'U', 'C', 'O', 'D', 'E', 'R'};
    for (int i = 0; i < 4; i++) nonce[i] = (uint8_t)(counter >> (8 * i));
    for (int i = 0; i < 8; i++) nonce[4 + i] = tail[i];
}

static void wipe(volatile uint8_t *p, size_t n) {
    while (n--) *p++ = 0;
}

void mcu_link_init(mcu_link_t *l, const uint8_t *key, int (*store_key)(const uint8_t key[32]),
                   const uint8_t *entropy, int boot_count_ok, uint32_t boot_count, const uint8_t id[MCU_DEVICE_ID]) {
    wipe((volatile uint8_t *)l, sizeof *l);
    l->store_key = store_key;
    if (key) {
        for (int i = 0; i < 32; i++) l->key[i] = key[i];
        l->keyed = 1;
    }
    for (int i = 0; i < MCU_DEVICE_ID; i++) l->id[i] = id[i];
    /* the nonce generator's seed: ChaCha20Block(entropy, boot counter, "MCUCODER-RNG"): the
     * generator's 32 bytes make it fresh on every boot; without them (zeros), the boot
     * counter, committed before this call, does.  A part with neither offers no nonce. */
    static const uint8_t label[12] = {'M', 'C', 'U', 'C', 'O', 'D', 'E', 'R', '-', 'R', 'N', 'G'};
    uint8_t zero[32] = {0}, out[64];
    l->fresh = entropy != 0 || boot_count_ok;
    mcu_chacha20_block(entropy ? entropy : zero, boot_count, label, out);
    for (int i = 0; i < 32; i++) l->drbg[i] = out[i];
    wipe(out, sizeof out);
}

void mcu_link_new_nonce(mcu_link_t *l) {
    uint8_t zero[12] = {0}, r[64], out[64];
    l->nonce_live = 0;
    for (int i = 0; i < 16; i++) l->nonce[i] = 0;       /* all zeros: "no nonce", the host says why */
    if (!l->keyed || !l->fresh) return;
    /* 16 bytes from the generator (fast key erasure: the block's first half is its next
     * state), then PRF(device key, them): unique as long as the generator's output is, and
     * unpredictable without the key even where the seed is only the boot counter */
    mcu_chacha20_block(l->drbg, 0, zero, r);
    for (int i = 0; i < 32; i++) l->drbg[i] = r[i];
    prf(l->key, r + 32, out);
    for (int i = 0; i < 16; i++) l->nonce[i] = out[i];
    l->nonce_live = 1;
    wipe(r, sizeof r);
    wipe(out, sizeof out);
}

int mcu_link_rekey_due(mcu_link_t *l) {
    if (!l->session || l->tx_counter < l->rekey_at) return 0;
    l->rekey_at = l->tx_counter + 64;   /* ask again if this HELLO is lost */
    return 1;
}

/* this connection's keys from the device nonce and the host's: keys[0..31] device->host,
 * keys[32..63] host->device */
static void derive(const mcu_link_t *l, const uint8_t host_nonce[16], uint8_t keys[64]) {
    uint8_t k1[64];
    prf(l->key, l->nonce, k1);
    prf(k1, host_nonce, keys);
    wipe(k1, sizeof k1);
}

static void start_session(mcu_link_t *l, const uint8_t keys[64]) {
    for (int i = 0; i < 32; i++) { l->up[i] = keys[i]; l->down[i] = keys[32 + i]; }
    l->session = 1;
    l->tx_counter = 0;
    l->rx_highest = 0;
    l->rekey_at = MCU_LINK_REKEY_AT;
    l->nonce_live = 0;                  /* one session per HELLO: a replayed exchange finds no nonce */
}

int mcu_link_key_exchange(mcu_link_t *l, const uint8_t *p, size_t n) {
    if (!l->keyed || !l->nonce_live || n != 32) { l->malformed++; return -1; }
    uint8_t keys[64], aad[15 + 32], tag[16], nonce[12];
    mcu_link_nonce(0, nonce);
    derive(l, p, keys);                 /* p[0..15]: the host nonce; p[16..31]: its proof */
    for (int i = 0; i < 15; i++) aad[i] = handshake_aad[i];
    for (int i = 0; i < 16; i++) { aad[15 + i] = l->nonce[i]; aad[31 + i] = p[i]; }
    mcu_aead_seal(keys + 32, nonce, aad, sizeof aad, 0, 0, tag);
    uint8_t diff = 0;
    for (int i = 0; i < 16; i++) diff |= (uint8_t)(tag[i] ^ p[16 + i]);
    if (diff == 0) start_session(l, keys); else l->bad_tag++;
    wipe(keys, sizeof keys);
    return diff == 0 ? 0 : -1;
}

#ifdef MCU_SELF_SESSION
void mcu_link_session_for_test(mcu_link_t *l, const uint8_t host_nonce[16]) {
    uint8_t keys[64];
    derive(l, host_nonce, keys);
    start_session(l, keys);
}
#endif

int mcu_link_provision(mcu_link_t *l, const uint8_t *p, size_t n) {
    /* only a device without a key takes one, and only one addressed to its identity (the
     * operator named it: docs/serial-protocol.md); a key, once set, cannot be replaced */
    uint8_t diff = 0;
    for (size_t i = 0; i < MCU_DEVICE_ID && n == MCU_DEVICE_ID + 32; i++) diff |= (uint8_t)(p[i] ^ l->id[i]);
    if (l->keyed || n != MCU_DEVICE_ID + 32 || diff || !l->store_key || l->store_key(p + MCU_DEVICE_ID)) {
        l->malformed++;
        return -1;
    }
    for (int i = 0; i < 32; i++) l->key[i] = p[MCU_DEVICE_ID + i];
    l->keyed = 1;
    return 0;
}

int mcu_link_open(mcu_link_t *l, uint8_t *p, size_t n, uint8_t *type, uint8_t **payload, size_t *len) {
    if (!l->session) { l->unsealed++; return -1; }
    if (n < MCU_SEAL_OVERHEAD) { l->malformed++; return -1; }
    uint32_t counter = le32(p);
    uint8_t nonce[12], aad = MCU_CMD_SEALED;
    mcu_link_nonce(counter, nonce);
    if (mcu_aead_open(l->down, nonce, &aad, 1, p + 4, n - 4 - 16, p + n - 16)) { l->bad_tag++; return -1; }
    if (counter <= l->rx_highest) { l->replay++; return -1; }      /* commands only move forward */
    l->rx_highest = counter;
    *type = p[4];
    *payload = p + 5;
    *len = n - MCU_SEAL_OVERHEAD;
    return 0;
}
