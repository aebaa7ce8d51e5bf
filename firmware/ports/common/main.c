/* The camera node's frame loop: capture -> encode -> stream channels most-important-first,
 * stopping at the current budget -> honour host commands between channels and frames. */
#include <stdint.h>

#include "mcu_codec.h"
#include "mcu_protocol.h"
#include "mcu_video.h"
#include "port.h"

/* 1.1: any camera size up to MCU_MAX_WIDTH x MCU_MAX_HEIGHT (bitstream v3, FRAME_HEADER
 * with the picture's size); 1.2: scales, the picture coded at 1, 1/2 or 1/4 of the
 * camera's size as SET_BUDGET's second byte asks (bitstream v4, FRAME_HEADER with the scale) */
#define FIRMWARE_VERSION 0x0102u

/* No frame buffer: the encoder pulls camera rows into its own ring (mcu_codec.c) and
 * keeps the latent as packed 6-bit symbols: 12 channels of MCU_PACKED_BYTES(mcu_geo.n). */
static uint8_t symbols[MCU_CHANNELS * MCU_MAX_PACKED];
static void on_ack(uint32_t seq, uint16_t channels, uint8_t flags) {
    mcu_video_ack(seq, channels);
    if (flags & 1) mcu_video_request_refresh();
}

#ifndef MCU_START_BUDGET
#define MCU_START_BUDGET MCU_CHANNELS   /* channels per frame until the host sets a budget */
#endif
static mcu_control_t ctl = {.budget = MCU_START_BUDGET, .on_ack = on_ack};
static mcu_link_t link;                     /* protocol 2 once the device has a key */
static uint32_t frames_sent, tx_bytes, send_ticks_total;

static void le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void send_hello(void) {
    uint8_t p[36];                  /* protocol 2 adds this connection's device nonce */
    p[0] = link.keyed ? 2 : MCU_PROTOCOL_VERSION;
    p[1] = (uint8_t)FIRMWARE_VERSION; p[2] = (uint8_t)(FIRMWARE_VERSION >> 8);
    le32(p + 3, mcu_model_id()); p[7] = TARGET_ID;
    le32(p + 8, port_static_ram()); le32(p + 12, port_stack_peak()); le32(p + 16, port_flash_used());
    /* a new nonce per connection; while one waits for its KEY_EXCHANGE, HELLO repeats it */
    if (!link.nonce_live) mcu_link_new_nonce(&link);
    for (int i = 0; i < 16; i++) p[20 + i] = link.nonce[i];
    tx_bytes += mcu_send_packet(MCU_PKT_HELLO, p, link.keyed ? 36 : 20, 0, 0);
}

static void send_status(void) {
    uint8_t p[35];                  /* protocol 2 adds the rejected host packets by cause */
    le32(p, frames_sent); le32(p + 4, tx_bytes); le32(p + 8, ctl.rx_errors); p[12] = ctl.budget;
    p[13] = (uint8_t)ctl.fps_x100; p[14] = (uint8_t)(ctl.fps_x100 >> 8);
    le32(p + 15, port_ticks() / (TIMER_HZ / 1000));
    le32(p + 19, link.bad_tag); le32(p + 23, link.replay); le32(p + 27, link.unsealed); le32(p + 31, link.malformed);
    tx_bytes += mcu_send_packet(MCU_PKT_STATUS, p, link.keyed ? 35 : 19, 0, 0);
}

static uint32_t send(uint8_t type, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    uint32_t t = port_ticks();
    tx_bytes += mcu_send_packet(type, a, alen, b, blen);
    t = port_ticks() - t;
    send_ticks_total += t;
    return t;
}

static void poll_commands(void) {
    /* Read what has arrived; once a command has started, wait briefly for the rest
     * (commands are a few bytes; a UART delivers them back to back). */
    uint32_t idle = 0;
    while (idle < 20000u) {
        int c = port_uart_getc();
        if (c >= 0) {
            mcu_rx_byte(&ctl, (uint8_t)c);
            idle = 0;
            /* answer in order: a HELLO asked for before a KEY_EXCHANGE goes out before its
             * SESSION_OK, with the nonce that exchange is for */
            if (ctl.hello_requested) { ctl.hello_requested = 0; send_hello(); }
            if (ctl.session_started) { ctl.session_started = 0; send(MCU_PKT_SESSION_OK, 0, 0, 0, 0); }
            if (ctl.identity_requested) { ctl.identity_requested = 0; send(MCU_PKT_IDENTITY, link.id, 16, 0, 0); }
        } else if (mcu_rx_pending()) {
            idle++;
        } else {
            break;
        }
    }
    if (ctl.status_requested) { ctl.status_requested = 0; send_status(); }
    if (mcu_link_rekey_due(&link)) send_hello();     /* near the counter limit: ask for new keys */
}

/* With a key and no session, nothing goes out but HELLO: offer it again every half second
 * (timer time) until a host completes the handshake, so a lost HELLO or exchange costs
 * half a second, never the link. */
static void wait_for_session(void) {
    uint32_t t = port_ticks();
    while (link.keyed && !link.session) {
        poll_commands();
        if (port_ticks() - t >= TIMER_HZ / 2 && !link.session) {
            t = port_ticks();
            send_hello();
        }
    }
}

static void put_u32(char *buf, uint32_t v) {   /* decimal, for the report line */
    char tmp[11];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *buf++ = tmp[--n];
    *buf = 0;
}

static char *append(char *p, const char *s) {
    while (*s) *p++ = *s++;
    *p = 0;
    return p;
}

static char *append_size(char *p, int w, int h) {
    put_u32(p, (uint32_t)w);
    while (*p) p++;
    *p++ = 'x';
    put_u32(p, (uint32_t)h);
    while (*p) p++;
    return p;
}

/* A camera this build cannot code: say so to the host (DEVICE_ERROR) and on the console,
 * keep answering the host for a while (its last writes), then stop. */
static int refuse_camera(int w, int h) {
    char msg[160], *p = msg;
    p = append(p, "camera picture ");
    p = append_size(p, w, h);
    p = append(p, " is outside what this firmware codes: each side 8 or more, at most ");
    p = append_size(p, MCU_MAX_WIDTH, MCU_MAX_HEIGHT);
    p = append(p, " (build it with MCU_MAX_WIDTH / MCU_MAX_HEIGHT)");
    uint8_t code = MCU_DEVICE_ERROR_CAMERA_SIZE;
    wait_for_session();
    send(MCU_PKT_DEVICE_ERROR, &code, 1, (const uint8_t *)msg, (size_t)(p - msg));
    console_write("camera: ");
    console_write(msg);
    console_write("\n");
    uint32_t t_end = port_ticks();
    while (port_ticks() - t_end < TIMER_HZ / 2) poll_commands();
    return 1;
}

static void report(const char *key, uint32_t v) {
    char num[12];
    put_u32(num, v);
    console_write("MCU_REPORT ");
    console_write(key);
    console_write("=");
    console_write(num);
    console_write("\n");
}

int main(void) {
    port_init();
    uint8_t key[32], seed[32], id[16];
    uint32_t boot = 0;
    int keyed = port_key_load(key), have_rng = port_entropy(seed), counted = port_boot_count(&boot) == 0;
    port_device_id(id);
    mcu_link_init(&link, keyed ? key : 0, port_key_store, have_rng ? seed : 0, counted, boot, id);
    for (int i = 0; i < 32; i++) key[i] = seed[i] = 0;
    mcu_protocol_set_link(&link);
    int cam_w = 0, cam_h = 0;
    int n_frames = camera_open(&cam_w, &cam_h);
    send_hello();
#ifdef MCU_SELF_SESSION
    /* measurement build (make report): a session with a fixed host nonce of zeros, as if
     * a host had answered, so the sealed stream runs without a host */
    if (link.keyed) {
        uint8_t ex[32] = {0};
        mcu_link_session_for_test(&link, ex);
    }
#endif
    if (n_frames <= 0) {
        console_write("camera: cannot read camera.rgb\n");
        return 1;
    }
    if (mcu_set_geometry(cam_w, cam_h, 0) != MCU_OK) return refuse_camera(cam_w, cam_h);
    uint32_t encode_ticks_total = 0;
    mcu_set_clock(port_ticks);
    for (int seq = 0; seq < n_frames; seq++) {
        poll_commands();
        /* with a key, nothing goes out in the clear: wait for a host that has it */
        wait_for_session();
        uint32_t t_capture = port_ticks();
        int k = ctl.budget;
        /* the scale asked for, from this frame on; one whose picture would be under 8
         * pixels a side is not taken (the frame stays at the last scale) */
        if (ctl.scale_shift != mcu_geo.shift && mcu_set_geometry(cam_w, cam_h, ctl.scale_shift) != MCU_OK)
            ctl.scale_shift = (uint8_t)mcu_geo.shift;
        /* camera rows are read as the encoder needs them; their wait is not encode time */
        uint32_t t0 = port_ticks(), camera0 = mcu_stage_ticks[MCU_STAGE_CAMERA];
        if (camera_start(seq) || mcu_encode_symbols_rows(camera_read_row, 0, symbols)) {
            console_write("camera: read failed\n");
            return 1;
        }
        uint32_t ticks = port_ticks() - t0 - (mcu_stage_ticks[MCU_STAGE_CAMERA] - camera0);
        /* 224x224: the 13 bytes of before (version 1, or 2 when chunks may come as
         * CHUNK_INTER); any other size: version 3 and the picture's width and height;
         * scaled: version 4, the camera's width and height and the scale shift */
        uint8_t h[18];
        int version = mcu_bitstream_version();
        le32(h, (uint32_t)seq); le32(h + 4, t_capture / (TIMER_HZ / 1000000)); h[8] = MCU_CHANNELS;
        h[9] = (uint8_t)mcu_geo.lh; h[10] = (uint8_t)mcu_geo.lw; h[11] = (uint8_t)k;
        h[12] = (uint8_t)(version == 1 && mcu_video_active() ? 2 : version);
        h[13] = (uint8_t)mcu_geo.width; h[14] = (uint8_t)(mcu_geo.width >> 8);
        h[15] = (uint8_t)mcu_geo.height; h[16] = (uint8_t)(mcu_geo.height >> 8);
        h[17] = (uint8_t)mcu_geo.shift;
        send(MCU_PKT_FRAME_HEADER, h, version == 1 ? 13 : version == 3 ? 17 : 18, 0, 0);
        uint8_t *chunk = mcu_chunk_buffer(0);
        for (int c = 0; c < k; c++) {
            uint32_t tc = port_ticks();
            int delta;
            size_t len = mcu_code_channel_video((uint32_t)seq, c, symbols + c * MCU_PACKED_BYTES(mcu_geo.n), chunk,
                                                &delta);
            ticks += port_ticks() - tc;
            uint8_t ch[6];
            le32(ch, (uint32_t)seq); ch[4] = (uint8_t)c; ch[5] = (uint8_t)delta;
            send(delta ? MCU_PKT_CHUNK_INTER : MCU_PKT_CHUNK, ch, delta ? 6 : 5, chunk, len);
            poll_commands();       /* a new budget applies from the next frame */
        }
        mcu_video_frame_done();
#ifdef MCU_SELF_ACK
        /* measurement build (make report): a loss-free link whose receiver acknowledges
         * every frame at once, so video mode runs without a host */
        mcu_video_ack((uint32_t)seq, (uint16_t)((1u << k) - 1u));
#endif
        uint8_t e[8];
        le32(e, (uint32_t)seq); le32(e + 4, ticks);
        send(MCU_PKT_FRAME_END, e, sizeof e, 0, 0);
        frames_sent++;
        encode_ticks_total += ticks;
        if (ctl.fps_x100) {        /* pace to the requested frame rate */
            uint32_t period = (uint32_t)((uint64_t)TIMER_HZ * 100 / ctl.fps_x100);
            while (port_ticks() - t_capture < period) poll_commands();
        }
    }
    poll_commands();
    send_status();
    /* linger half a second (timer time) reading commands, so the host's last writes are
     * consumed: a socket closed with unread data resets the connection and the host may
     * lose the end of our stream */
    uint32_t t_end = port_ticks();
    while (port_ticks() - t_end < TIMER_HZ / 2) poll_commands();
    report("frames", frames_sent);
    report("instructions_per_frame", TICKS_TO_INSTR(encode_ticks_total / frames_sent));
    /* framing, CRC and (protocol 2) sealing of a frame's packets, beside the encoder */
    report("instructions_send", TICKS_TO_INSTR(send_ticks_total / frames_sent));
    report("sealed", link.session);
    static const char *const stages[MCU_STAGES] = {"camera", "conv1", "conv2", "conv3", "code"};
    for (int i = 0; i < MCU_STAGES; i++) {
        char key[32] = "instructions_";
        int n = 13;
        for (const char *p = stages[i]; *p; p++) key[n++] = *p;
        key[n] = 0;
        report(key, TICKS_TO_INSTR(mcu_stage_ticks[i] / frames_sent));
    }
    report("static_ram_bytes", port_static_ram());
    report("stack_peak_bytes", port_stack_peak());
    report("flash_bytes", port_flash_used());
    return 0;
}
