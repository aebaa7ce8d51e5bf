/* M-JPEG on the same MCU, for `make report`: the frames of the same row-streaming
 * camera, encoded by core/mcu_jpeg.c at each quality listed in jpeg.cfg (one byte per
 * quality), each written to its own file q<QQQ>_f<NNN>.jpg in QEMU's working directory.
 * Instructions are counted without the camera and the file writes. */
#include <stdint.h>

#include "mcu_jpeg.h"
#include "port.h"

int semihost_read_file(const char *name, uint8_t *buf, int cap);      /* semihost.c */
int semihost_open_write(const char *name);
void semihost_write(int fd, const uint8_t *data, uint32_t n);
void semihost_close(int fd);

static uint32_t excluded;            /* ticks spent in the camera and the file writes */

static int timed_row(void *ctx, int y, uint8_t *dst) {
    uint32_t t = port_ticks();
    int r = camera_read_row(ctx, y, dst);
    excluded += port_ticks() - t;
    return r;
}

static void to_file(void *ctx, const uint8_t *data, size_t n) {
    uint32_t t = port_ticks();
    semihost_write(*(int *)ctx, data, (uint32_t)n);
    excluded += port_ticks() - t;
}

static char *put_num(char *p, uint32_t v, int digits) {
    for (int i = digits - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + digits;
}

static void report(int q, const char *key, uint32_t v) {
    char buf[64], *p = buf;
    for (const char *s = "MCU_REPORT jpeg_q"; *s; s++) *p++ = *s;
    p = put_num(p, (uint32_t)q, 3);
    *p++ = '_';
    for (const char *s = key; *s; s++) *p++ = *s;
    *p++ = '=';
    p = put_num(p, v, 10);
    *p++ = '\n';
    *p = 0;
    console_write(buf);
}

int main(void) {
    port_init();
    uint8_t qualities[16];
    int n_q = semihost_read_file("jpeg.cfg", qualities, sizeof qualities);
    int w = 0, h = 0;
    int n_frames = camera_open(&w, &h);
    if (n_q <= 0 || n_frames <= 0) {
        console_write("jpeg: needs jpeg.cfg and camera.rgb\n");
        return 1;
    }
    for (int i = 0; i < n_q; i++) {
        uint32_t ticks = 0, bytes = 0;
        for (int f = 0; f < n_frames; f++) {
            char name[] = "q000_f000.jpg";
            put_num(name + 1, qualities[i], 3);
            put_num(name + 6, (uint32_t)f, 3);
            int fd = semihost_open_write(name);
            if (fd < 0 || camera_start(f)) return 1;
            excluded = 0;
            uint32_t t0 = port_ticks();
            size_t len = mcu_jpeg_encode_rows(timed_row, 0, w, h, qualities[i], to_file, &fd);
            ticks += port_ticks() - t0 - excluded;
            semihost_close(fd);
            if (!len) return 1;
            bytes += (uint32_t)len;
        }
        report(qualities[i], "instructions_per_frame", TICKS_TO_INSTR(ticks / (uint32_t)n_frames));
        report(qualities[i], "bytes", bytes);
    }
    console_write("MCU_REPORT jpeg_done=1\n");
    return 0;
}
