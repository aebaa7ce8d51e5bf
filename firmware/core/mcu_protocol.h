/* Serial protocol v1, device side (docs/serial-protocol.md); twin of
 * mcucoder_ros/link/serial_protocol.py.  COBS framing, 0x00 delimiter, CRC-16/CCITT-FALSE.
 * No malloc; the port supplies mcu_port_putc(). */
#ifndef MCU_PROTOCOL_H
#define MCU_PROTOCOL_H
#include <stddef.h>
#include <stdint.h>

#include "mcu_link.h"

#define MCU_PROTOCOL_VERSION 1      /* plain; 2 when the device has a key (mcu_link.h) */
enum {
    MCU_PKT_HELLO = 0x01, MCU_PKT_FRAME_HEADER = 0x02, MCU_PKT_CHUNK = 0x03, MCU_PKT_FRAME_END = 0x04,
    MCU_PKT_STATUS = 0x05, MCU_PKT_CHUNK_INTER = 0x06, MCU_PKT_DEVICE_ERROR = 0x09,
    MCU_CMD_REQUEST_HELLO = 0x80, MCU_CMD_SET_BUDGET = 0x81, MCU_CMD_SET_FPS = 0x82, MCU_CMD_REQUEST_STATUS = 0x83,
    MCU_CMD_ACK = 0x84
};

/* DEVICE_ERROR codes (then a line of text) */
enum { MCU_DEVICE_ERROR_CAMERA_SIZE = 1, MCU_DEVICE_ERROR_CAMERA = 2 };

void mcu_port_putc(uint8_t c);              /* provided by the port (UART) or the host test */

uint16_t mcu_crc16(const uint8_t *data, size_t n, uint16_t crc);

/* One packet whose payload is a followed by b (either may be empty): no copy needed
 * to send a chunk behind its small header.  Returns bytes written to the link. */
size_t mcu_send_packet(uint8_t type, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

typedef struct {
    uint8_t budget;          /* channels to send, 1..12 */
    uint8_t scale_shift;     /* firmware 1.2: code the camera's picture at 1 / 2^scale_shift (0..2) */
    uint16_t fps_x100;       /* 0: as fast as possible */
    uint8_t status_requested;
    uint8_t hello_requested;
    uint8_t session_started;  /* protocol 2: a KEY_EXCHANGE was accepted; answer SESSION_OK */
    uint8_t identity_requested;   /* REQUEST_IDENTITY from a host, to a device without a key */
    uint32_t rx_errors;      /* bad CRC, bad framing, unknown or malformed commands */
    /* video mode: called for each ACK command (frame, channel mask, flags: bit 0 refresh) */
    void (*on_ack)(uint32_t sequence, uint16_t channels, uint8_t flags);
} mcu_control_t;

/* Feed one received byte; complete, valid commands update *ctl. */
void mcu_rx_byte(mcu_control_t *ctl, uint8_t byte);

/* Protocol 2: the device's sealed link (NULL: protocol 1). */
void mcu_protocol_set_link(mcu_link_t *l);

/* Non-zero while a command packet is partly received. */
int mcu_rx_pending(void);

#endif
