/* Host test: the C protocol emits serial_device.bin byte for byte and parses
 * serial_host.bin (golden vectors written by mcucoder_ros/link/vectors.py). */
#include <stdio.h>
#include <string.h>

#include "mcu_codec.h"
#include "mcu_protocol.h"

static uint8_t out[16384];
static size_t out_n;
void mcu_port_putc(uint8_t c) { if (out_n < sizeof out) out[out_n++] = c; }

static void le32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static long slurp(const char *dir, const char *name, uint8_t *buf, long cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { printf("FAIL cannot open %s\n", path); return -1; }
    long n = (long)fread(buf, 1, (size_t)cap, f);
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "../test/vectors";
    static uint8_t mcf[MCU_MAX_FRAME], ref[16384], host[1024];
    long n_mcf = slurp(dir, "astronaut.mcf", mcf, sizeof mcf);
    long n_ref = slurp(dir, "serial_device.bin", ref, sizeof ref);
    long n_host = slurp(dir, "serial_host.bin", host, sizeof host);
    if (n_mcf < 0 || n_ref < 0 || n_host < 0) return 1;
    uint8_t p[32];
    /* HELLO: protocol, fw version, model id, target, ram static, stack peak, flash */
    p[0] = 1; p[1] = 0x00; p[2] = 0x01; le32(p + 3, 0x0E91BF51u); p[7] = 1;
    le32(p + 8, 380000); le32(p + 12, 1024); le32(p + 16, 90000);
    mcu_send_packet(MCU_PKT_HELLO, p, 20, 0, 0);
    le32(p, 7); le32(p + 4, 123456); p[8] = 12; p[9] = 28; p[10] = 28; p[11] = 2; p[12] = 1;
    mcu_send_packet(MCU_PKT_FRAME_HEADER, p, 13, 0, 0);
    size_t off = 16 + 3 * mcf[15];
    for (int c = 0; c < 2; c++) {
        size_t len = mcf[16 + 3 * c + 1] | ((size_t)mcf[16 + 3 * c + 2] << 8);
        le32(p, 7); p[4] = (uint8_t)c;
        mcu_send_packet(MCU_PKT_CHUNK, p, 5, mcf + off, len);
        off += len;
    }
    le32(p, 7); le32(p + 4, 4242);
    mcu_send_packet(MCU_PKT_FRAME_END, p, 8, 0, 0);
    le32(p, 8); le32(p + 4, 99999); le32(p + 8, 3); p[12] = 5; p[13] = 750 & 0xff; p[14] = 750 >> 8; le32(p + 15, 12345);
    mcu_send_packet(MCU_PKT_STATUS, p, 19, 0, 0);
    int fail = 0;
    if ((long)out_n != n_ref || memcmp(out, ref, out_n)) { printf("FAIL device stream differs (%zu vs %ld bytes)\n", out_n, n_ref); fail = 1; }
    mcu_control_t ctl = {.budget = 12};
    for (long i = 0; i < n_host; i++) mcu_rx_byte(&ctl, host[i]);
    if (ctl.budget != 5 || ctl.fps_x100 != 750 || !ctl.status_requested || !ctl.hello_requested || ctl.rx_errors != 1) {
        printf("FAIL host commands: budget %d fps %d status %d hello %d errors %u\n", ctl.budget, ctl.fps_x100,
               ctl.status_requested, ctl.hello_requested, (unsigned)ctl.rx_errors);
        fail = 1;
    }
    /* a frame of another size (firmware 1.1): the 17-byte FRAME_HEADER, and DEVICE_ERROR */
    static uint8_t sized_mcf[MCU_MAX_FRAME];
    long n_sized = slurp(dir, "sized/traffic.mcf", sized_mcf, sizeof sized_mcf);
    long n_sref = slurp(dir, "serial_device_sized.bin", ref, sizeof ref);
    if (n_sized < 0 || n_sref < 0) return 1;
    out_n = 0;
    p[0] = 1; p[1] = 0x01; p[2] = 0x01; le32(p + 3, 0x0E91BF51u); p[7] = 1;
    le32(p + 8, 380000); le32(p + 12, 1024); le32(p + 16, 90000);
    mcu_send_packet(MCU_PKT_HELLO, p, 20, 0, 0);
    le32(p, 9); le32(p + 4, 654321); p[8] = 12; p[9] = 36; p[10] = 44; p[11] = 2; p[12] = 3;
    p[13] = 352 & 0xff; p[14] = 352 >> 8; p[15] = 288 & 0xff; p[16] = 288 >> 8;
    mcu_send_packet(MCU_PKT_FRAME_HEADER, p, 17, 0, 0);
    off = 18 + 4 * (size_t)sized_mcf[13];          /* version 3: 18-byte header, 4-byte entries */
    for (int c = 0; c < 2; c++) {
        size_t len = sized_mcf[18 + 4 * c + 1] | ((size_t)sized_mcf[18 + 4 * c + 2] << 8);
        le32(p, 9); p[4] = (uint8_t)c;
        mcu_send_packet(MCU_PKT_CHUNK, p, 5, sized_mcf + off, len);
        off += len;
    }
    le32(p, 9); le32(p + 4, 4343);
    mcu_send_packet(MCU_PKT_FRAME_END, p, 8, 0, 0);
    static const char err[] = "camera picture 800x600 is outside what this firmware codes: each side 8 or more, "
                              "at most 640x480 (build it with MCU_MAX_WIDTH / MCU_MAX_HEIGHT)";
    uint8_t code = MCU_DEVICE_ERROR_CAMERA_SIZE;
    mcu_send_packet(MCU_PKT_DEVICE_ERROR, &code, 1, (const uint8_t *)err, sizeof err - 1);
    if ((long)out_n != n_sref || memcmp(out, ref, out_n)) {
        printf("FAIL sized device stream differs (%zu vs %ld bytes)\n", out_n, n_sref);
        fail = 1;
    }
    printf("%s: serial protocol vectors\n", fail ? "FAIL" : "OK");
    return fail;
}
