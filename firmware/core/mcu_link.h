/* Serial protocol 2, device side: the sealed link (docs/serial-protocol.md, "Protocol 2");
 * twin of mcucoder_ros/link/sealed.py (DeviceLink).  With a device key, every packet but
 * HELLO travels sealed (ChaCha20-Poly1305, core/mcu_aead.c) under per-connection keys
 * derived from the key, the device's nonce (a new one per HELLO) and the host's. */
#ifndef MCU_LINK_H
#define MCU_LINK_H
#include <stddef.h>
#include <stdint.h>

enum {
    MCU_PKT_SESSION_OK = 0x07, MCU_PKT_SEALED = 0x10,
    MCU_CMD_KEY_EXCHANGE = 0x85, MCU_CMD_PROVISION_KEY = 0x86, MCU_CMD_SEALED = 0x90
};
#define MCU_SEAL_OVERHEAD 21            /* counter u32, inner type u8, tag[16] */

typedef struct {
    uint8_t keyed, session, nonce_live;
    uint8_t key[32], up[32], down[32];   /* device key; this session's device->host and host->device keys */
    uint8_t nonce[16];                   /* the device nonce of the last HELLO */
    uint32_t tx_counter, rx_highest;
    uint32_t boot_count, hello_count;    /* with the key, they make each HELLO's nonce unique */
    uint32_t bad_tag, replay, unsealed, malformed;    /* rejected host packets, by cause */
    int (*store_key)(const uint8_t key[32]);          /* provisioning: the port's key storage */
} mcu_link_t;

/* The AEAD nonce of a sealed packet: counter u32 LE, then "MCUCODER". */
void mcu_link_nonce(uint32_t counter, uint8_t nonce[12]);

/* key: NULL while the device has none (protocol 1, plain, until provisioned). */
void mcu_link_init(mcu_link_t *l, const uint8_t *key, uint32_t boot_count, int (*store_key)(const uint8_t key[32]));
/* A fresh device nonce for the next HELLO (which also ends any pending handshake). */
void mcu_link_new_nonce(mcu_link_t *l);
/* Host packets of protocol 2.  Each returns 0 when accepted; rejections are counted. */
int mcu_link_key_exchange(mcu_link_t *l, const uint8_t *p, size_t n);
int mcu_link_provision(mcu_link_t *l, const uint8_t *p, size_t n);
/* Opens a SEALED command in place: *type and *payload, *len of the inner packet. */
int mcu_link_open(mcu_link_t *l, uint8_t *p, size_t n, uint8_t *type, uint8_t **payload, size_t *len);
#ifdef MCU_SELF_SESSION
/* measurement builds only: a session as if a host had sent this nonce and its proof */
void mcu_link_session_for_test(mcu_link_t *l, const uint8_t host_nonce[16]);
#endif

#endif
