/* Serial protocol 2, device side: the sealed link (docs/serial-protocol.md, "Protocol 2");
 * twin of mcucoder_ros/link/sealed.py (DeviceLink).  With a device key, every packet but
 * HELLO travels sealed (ChaCha20-Poly1305, core/mcu_aead.c) under per-connection keys
 * derived from the key, the device's nonce (a new one per HELLO) and the host's. */
#ifndef MCU_LINK_H
#define MCU_LINK_H
#include <stddef.h>
#include <stdint.h>

enum {
    MCU_PKT_SESSION_OK = 0x07, MCU_PKT_IDENTITY = 0x08, MCU_PKT_SEALED = 0x10,
    MCU_CMD_KEY_EXCHANGE = 0x85, MCU_CMD_PROVISION_KEY = 0x86, MCU_CMD_REQUEST_IDENTITY = 0x87, MCU_CMD_SEALED = 0x90
};
#define MCU_SEAL_OVERHEAD 21            /* counter u32, inner type u8, tag[16] */
#define MCU_DEVICE_ID 16                /* bytes of the device's public identity (serial number) */

/* Send counters: from MCU_LINK_REKEY_AT on, the device asks for new session keys (a new
 * HELLO, again every 64 packets until they come); at MCU_LINK_TX_LIMIT it seals nothing
 * more under these keys (the session ends: no AEAD nonce is ever used twice). */
#ifndef MCU_LINK_REKEY_AT
#define MCU_LINK_REKEY_AT 0x80000000u
#endif
#ifndef MCU_LINK_TX_LIMIT
#define MCU_LINK_TX_LIMIT 0xFFFFFF00u
#endif

typedef struct {
    uint8_t keyed, session, nonce_live, fresh;   /* fresh: the device can draw fresh nonces */
    uint8_t key[32], up[32], down[32];   /* device key; this session's device->host and host->device keys */
    uint8_t nonce[16];                   /* the device nonce of the last HELLO (live: offered, not yet used) */
    uint8_t drbg[32];                    /* the nonce generator's state (ChaCha20, fast key erasure) */
    uint8_t id[MCU_DEVICE_ID];           /* the device's identity: provisioning names it */
    uint32_t tx_counter, rx_highest, rekey_at;
    uint32_t bad_tag, replay, unsealed, malformed;    /* rejected host packets, by cause */
    int (*store_key)(const uint8_t key[32]);          /* provisioning: the port's key storage */
} mcu_link_t;

/* The AEAD nonce of a sealed packet: counter u32 LE, then "MCUCODER". */
void mcu_link_nonce(uint32_t counter, uint8_t nonce[12]);

/* key: NULL while the device has none (protocol 1, plain, until provisioned).
 * entropy: 32 bytes of the part's random generator, read once at boot, or NULL on a part
 * without one; boot_count_ok: the port committed boot_count to storage before this call.
 * With neither, the device offers no nonce and takes no KEY_EXCHANGE (no session). */
void mcu_link_init(mcu_link_t *l, const uint8_t *key, int (*store_key)(const uint8_t key[32]),
                   const uint8_t *entropy, int boot_count_ok, uint32_t boot_count, const uint8_t id[MCU_DEVICE_ID]);
/* A fresh device nonce for the next HELLO (all zeros when the device cannot draw one). */
void mcu_link_new_nonce(mcu_link_t *l);
/* 1 when the send counter is near its limit and a new HELLO should ask for new keys. */
int mcu_link_rekey_due(mcu_link_t *l);
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
