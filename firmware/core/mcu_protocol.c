#include "mcu_protocol.h"

#include "mcu_aead.h"

static mcu_link_t *link;        /* protocol 2: NULL or unkeyed means plain protocol 1 */

void mcu_protocol_set_link(mcu_link_t *l) { link = l; }

uint16_t mcu_crc16(const uint8_t *data, size_t n, uint16_t crc) {
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)data[i] << 8;
        for (int k = 0; k < 8; k++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Streaming COBS encoder: at most 254 data bytes are held back. */
static uint8_t cobs_block[254];
static size_t cobs_len, cobs_written;

static void cobs_flush(void) {
    mcu_port_putc((uint8_t)(cobs_len + 1));
    for (size_t i = 0; i < cobs_len; i++) mcu_port_putc(cobs_block[i]);
    cobs_written += cobs_len + 1;
    cobs_len = 0;
}

static void cobs_put(uint8_t c) {
    if (c == 0) {
        cobs_flush();
        return;
    }
    cobs_block[cobs_len++] = c;
    if (cobs_len == 254) {
        mcu_port_putc(0xFF);
        for (size_t i = 0; i < 254; i++) mcu_port_putc(cobs_block[i]);
        cobs_written += 255;
        cobs_len = 0;
        /* a full block ends without an implied zero; the next block starts fresh */
    }
}

/* One pass: the CRC is updated as each byte goes out, so a sealed packet is encrypted
 * and authenticated as it streams, without a copy of the payload. */
static uint16_t tx_crc;

static void put(uint8_t c) {
    tx_crc = mcu_crc16(&c, 1, tx_crc);
    cobs_put(c);
}

static void put_sealed(mcu_aead_t *st, const uint8_t *p, size_t n) {
    uint8_t ct[64];
    while (n) {
        size_t m = n < sizeof ct ? n : sizeof ct;
        mcu_aead_crypt(st, p, ct, m, 0);
        for (size_t i = 0; i < m; i++) put(ct[i]);
        p += m;
        n -= m;
    }
}

size_t mcu_send_packet(uint8_t type, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    /* with a key, nothing but HELLO leaves in the clear; and nothing is sealed at or past
     * the counter limit (the session ends there, a new handshake follows) */
    int sealed = link && link->keyed && type != MCU_PKT_HELLO;
    if (sealed && (!link->session || link->tx_counter >= MCU_LINK_TX_LIMIT)) {
        if (link->session) link->session = 0;
        return 0;
    }
    size_t len = alen + blen + (sealed ? MCU_SEAL_OVERHEAD : 0);
    cobs_len = 0;
    cobs_written = 0;
    tx_crc = 0xFFFF;
    put(sealed ? MCU_PKT_SEALED : type);
    put((uint8_t)len);
    put((uint8_t)(len >> 8));
    if (!sealed) {
        for (size_t i = 0; i < alen; i++) put(a[i]);
        for (size_t i = 0; i < blen; i++) put(b[i]);
    } else {
        uint8_t nonce[12], aad = MCU_PKT_SEALED, tag[16];
        mcu_link_nonce(link->tx_counter++, nonce);
        mcu_aead_t st;
        mcu_aead_init(&st, link->up, nonce, &aad, 1);
        for (int i = 0; i < 4; i++) put(nonce[i]);
        put_sealed(&st, &type, 1);
        put_sealed(&st, a, alen);
        put_sealed(&st, b, blen);
        mcu_aead_tag(&st, tag);
        for (int i = 0; i < 16; i++) put(tag[i]);
    }
    const uint16_t crc = tx_crc;
    cobs_put((uint8_t)crc);
    cobs_put((uint8_t)(crc >> 8));
    cobs_flush();           /* the last block (possibly empty) */
    mcu_port_putc(0);
    return cobs_written + 1;
}

/* --- receiving host commands ------------------------------------------------------ */
#define RX_MAX 80             /* the longest command, a sealed ACK or a KEY_EXCHANGE, encoded */
static uint8_t rx_buf[RX_MAX];
static size_t rx_len;
static int rx_overflow;

static int cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t *out_len) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i];
        if (code == 0 || i + code > n) return -1;
        for (size_t k = 1; k < code; k++) out[o++] = in[i + k];
        i += code;
        if (code < 0xFF && i < n) out[o++] = 0;
    }
    *out_len = o;
    return 0;
}

static void command(mcu_control_t *ctl, uint8_t type, const uint8_t *p, size_t len) {
    switch (type) {
    case MCU_CMD_SET_BUDGET:     /* k, and (firmware 1.2) optionally the scale shift */
        if ((len == 1 || (len == 2 && p[1] <= 2)) && p[0] >= 1 && p[0] <= 12) {
            ctl->budget = p[0];
            if (len == 2) ctl->scale_shift = p[1];
        } else {
            ctl->rx_errors++;
        }
        break;
    case MCU_CMD_SET_FPS:
        if (len == 2) ctl->fps_x100 = (uint16_t)(p[0] | (p[1] << 8)); else ctl->rx_errors++;
        break;
    case MCU_CMD_ACK:
        if (len == 7 && ctl->on_ack)
            ctl->on_ack((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24,
                        (uint16_t)(p[4] | (p[5] << 8)), p[6]);
        else if (len != 7) ctl->rx_errors++;
        break;
    case MCU_CMD_REQUEST_STATUS: ctl->status_requested = 1; break;
    case MCU_CMD_REQUEST_HELLO: ctl->hello_requested = 1; break;
    default: ctl->rx_errors++;
    }
}

static void dispatch(mcu_control_t *ctl) {
    uint8_t raw[RX_MAX];
    size_t n;
    if (cobs_decode(rx_buf, rx_len, raw, &n) || n < 5) { ctl->rx_errors++; return; }
    size_t len = raw[1] | ((size_t)raw[2] << 8);
    if (len != n - 5) { ctl->rx_errors++; return; }
    uint16_t crc = (uint16_t)(raw[n - 2] | (raw[n - 1] << 8));
    if (mcu_crc16(raw, n - 2, 0xFFFF) != crc) { ctl->rx_errors++; return; }
    uint8_t *p = raw + 3;
    const int keyed = link && link->keyed;
    switch (raw[0]) {
    case MCU_CMD_KEY_EXCHANGE:
        if (keyed && mcu_link_key_exchange(link, p, len) == 0) ctl->session_started = 1; else ctl->rx_errors++;
        break;
    case MCU_CMD_REQUEST_IDENTITY:      /* a device without a key says who it is, for provisioning */
        if (!keyed) ctl->identity_requested = 1; else { link->unsealed++; ctl->rx_errors++; }
        break;
    case MCU_CMD_PROVISION_KEY:         /* then a HELLO of protocol 2 with a nonce */
        if (link && mcu_link_provision(link, p, len) == 0) ctl->hello_requested = 1; else ctl->rx_errors++;
        break;
    case MCU_CMD_SEALED: {
        uint8_t type, *q;
        size_t m;
        if (keyed && mcu_link_open(link, p, len, &type, &q, &m) == 0) command(ctl, type, q, m); else ctl->rx_errors++;
        break;
    }
    default:
        /* with a key, only REQUEST_HELLO may come in the clear (it starts a new session) */
        if (keyed && raw[0] != MCU_CMD_REQUEST_HELLO) {
            link->unsealed++;
            ctl->rx_errors++;
        } else {
            command(ctl, raw[0], p, len);
        }
    }
}

int mcu_rx_pending(void) { return rx_len != 0 || rx_overflow; }

void mcu_rx_byte(mcu_control_t *ctl, uint8_t byte) {
    if (byte != 0) {
        if (rx_len < RX_MAX) rx_buf[rx_len++] = byte; else rx_overflow = 1;
        return;
    }
    if (rx_overflow) ctl->rx_errors++;
    else if (rx_len) dispatch(ctl);
    rx_len = 0;
    rx_overflow = 0;
}
