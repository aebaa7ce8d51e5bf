/* Arm semihosting, for the QEMU ports: the camera is a file of RGB frames in QEMU's
 * working directory (camera.rgb), read row by row, of the size camera.cfg states
 * (width u16 LE, height u16 LE; 224x224 without it); the console and exit code go to
 * the host.  A board replaces this file with its camera driver. */
#include "port.h"

static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_WRITE0 0x04
#define SYS_READ 0x06
#define SYS_SEEK 0x0A
#define SYS_FLEN 0x0C
#define SYS_EXIT 0x18

int semihost_read_file(const char *name, uint8_t *buf, int cap);

static int camera_fd = -1, clip_frames = 1, cam_width = 224, cam_height = 224;
#define FRAME_BYTES ((uint32_t)cam_width * (uint32_t)cam_height * 3u)

/* The frames in camera.rgb; with frames.cfg (u32 LE), that many frames, the clip looped
 * (long runs such as the link soak). */
int camera_open(int *width, int *height) {
    uint8_t cfg[4];
    if (semihost_read_file("camera.cfg", cfg, 4) == 4) {
        cam_width = cfg[0] | cfg[1] << 8;
        cam_height = cfg[2] | cfg[3] << 8;
    }
    *width = cam_width;
    *height = cam_height;
    static const char name[] = "camera.rgb";   /* in QEMU's working directory */
    uint32_t args[3] = {(uint32_t)name, 1 /* "rb" */, sizeof name - 1};
    camera_fd = semihost(SYS_OPEN, args);
    if (camera_fd < 0) return -1;
    uint32_t a[1] = {(uint32_t)camera_fd};
    int len = semihost(SYS_FLEN, a);
    if (!cam_width || !cam_height || (uint32_t)len < FRAME_BYTES) return -1;
    clip_frames = len / FRAME_BYTES;
    uint8_t n[4];
    if (semihost_read_file("frames.cfg", n, 4) == 4)
        return (int)((uint32_t)n[0] | (uint32_t)n[1] << 8 | (uint32_t)n[2] << 16 | ((uint32_t)n[3] & 0x7f) << 24);
    return clip_frames;
}

/* The emulated camera delivers a frame row by row, as a DMA line ring would. */
int camera_start(int index) {
    uint32_t seek[2] = {(uint32_t)camera_fd, (uint32_t)((index % clip_frames) * FRAME_BYTES)};
    return semihost(SYS_SEEK, seek) != 0 ? -1 : 0;
}

int camera_read_row(void *ctx, int y, uint8_t *dst) {
    (void)ctx;
    (void)y;                       /* rows come in order: the file position follows them */
    uint32_t rd[3] = {(uint32_t)camera_fd, (uint32_t)dst, (uint32_t)cam_width * 3u};
    return semihost(SYS_READ, rd) == 0 ? 0 : -1;    /* returns bytes NOT read */
}

void console_write(const char *s) { semihost(SYS_WRITE0, (void *)s); }

void port_exit(int code) {
    semihost(SYS_EXIT, (void *)(code == 0 ? 0x20026 : 0x20023));  /* ApplicationExit / RunTimeError */
    for (;;) {
    }
}

/* Files for the JPEG measurement (jpeg_main.c). */
int semihost_read_file(const char *name, uint8_t *buf, int cap) {
    uint32_t len = 0;
    while (name[len]) len++;
    uint32_t args[3] = {(uint32_t)name, 1 /* "rb" */, len};
    int fd = semihost(SYS_OPEN, args);
    if (fd < 0) return -1;
    uint32_t fl[1] = {(uint32_t)fd};
    int n = semihost(SYS_FLEN, fl);
    if (n > cap) n = cap;
    uint32_t rd[3] = {(uint32_t)fd, (uint32_t)buf, (uint32_t)n};
    int left = semihost(SYS_READ, rd);
    semihost(SYS_CLOSE, fl);
    return n - left;
}

int semihost_open_write(const char *name) {
    uint32_t len = 0;
    while (name[len]) len++;
    uint32_t args[3] = {(uint32_t)name, 5 /* "wb" */, len};
    return semihost(SYS_OPEN, args);
}

void semihost_write(int fd, const uint8_t *data, uint32_t n) {
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)data, n};
    semihost(SYS_WRITE, args);
}

void semihost_close(int fd) {
    uint32_t args[1] = {(uint32_t)fd};
    semihost(SYS_CLOSE, args);
}

/* Protocol 2's key and boot counter, in files in place of flash (port.h). */
int port_key_load(uint8_t key[32]) { return semihost_read_file("link.key", key, 32) == 32; }

int port_key_store(const uint8_t key[32]) {
    int fd = semihost_open_write("link.key");
    if (fd < 0) return -1;
    semihost_write(fd, key, 32);
    semihost_close(fd);
    return 0;
}

/* The boot counter is committed before it is used: written, then read back; a counter
 * that cannot be stored gives no nonce (main.c, core/mcu_link.c). */
int port_boot_count(uint32_t *count) {
    uint8_t b[4] = {0}, back[4] = {0};
    uint32_t n = semihost_read_file("boot.count", b, 4) == 4
                 ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24 : 0;
    n++;
    b[0] = (uint8_t)n; b[1] = (uint8_t)(n >> 8); b[2] = (uint8_t)(n >> 16); b[3] = (uint8_t)(n >> 24);
    int fd = semihost_open_write("boot.count");
    if (fd < 0) return -1;
    semihost_write(fd, b, 4);
    semihost_close(fd);
    if (semihost_read_file("boot.count", back, 4) != 4) return -1;
    for (int i = 0; i < 4; i++)
        if (back[i] != b[i]) return -1;
    *count = n;
    return 0;
}

#ifdef PORT_HW_RNG
int port_hw_rng(uint8_t seed[32]);     /* the part's generator (ports/stm32f405/stm32f4.c) */
#endif

/* QEMU models none of these parts' generators (the STM32F405's RNG, the TRNG of Cortex-M55
 * parts, the nRF's RNG): the host writes 32 random bytes per launch to rng.seed
 * (mcucoder_ros/qemu.py), read once here.  A board build reads its generator instead. */
int port_entropy(uint8_t seed[32]) {
#ifdef PORT_HW_RNG
    if (port_hw_rng(seed)) return 1;
#endif
    return semihost_read_file("rng.seed", seed, 32) == 32;
}

/* QEMU: device.id (16 bytes) beside the camera file; zeros when absent.  A board reads its
 * unique ID (STM32: 96 bits at 0x1FFF7A10; nRF: FICR DEVICEID). */
void port_device_id(uint8_t id[16]) {
    for (int i = 0; i < 16; i++) id[i] = 0;
    semihost_read_file("device.id", id, 16);
}
