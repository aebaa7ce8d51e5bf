/* CMSDK APB UART + timer drivers and Arm semihosting, shared by the MPS2 ports.
 * Register layouts: Arm Cortex-M System Design Kit technical reference. */
#include "port.h"

#define REG(base, off) (*(volatile uint32_t *)((base) + (off)))
#define UART_DATA 0x00
#define UART_STATE 0x04     /* bit0 TX full, bit1 RX full */
#define UART_CTRL 0x08      /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV 0x10
#define TIMER_CTRL 0x00
#define TIMER_VALUE 0x04
#define TIMER_RELOAD 0x08

void port_init(void) {
    REG(UART0_BASE, UART_BAUDDIV) = 16;
    REG(UART0_BASE, UART_CTRL) = 0x3;
    REG(TIMER0_BASE, TIMER_RELOAD) = 0xFFFFFFFFu;
    REG(TIMER0_BASE, TIMER_VALUE) = 0xFFFFFFFFu;
    REG(TIMER0_BASE, TIMER_CTRL) = 0x1;
}

void mcu_port_putc(uint8_t c) {
    while (REG(UART0_BASE, UART_STATE) & 1u) {
    }
    REG(UART0_BASE, UART_DATA) = c;
}

int port_uart_getc(void) {
    if (REG(UART0_BASE, UART_STATE) & 2u) return (int)(REG(UART0_BASE, UART_DATA) & 0xFF);
    return -1;
}

uint32_t port_ticks(void) { return 0xFFFFFFFFu - REG(TIMER0_BASE, TIMER_VALUE); }

/* --- semihosting ----------------------------------------------------------------- */
static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#define SYS_OPEN 0x01
#define SYS_WRITE0 0x04
#define SYS_READ 0x06
#define SYS_SEEK 0x0A
#define SYS_FLEN 0x0C
#define SYS_EXIT 0x18

static int camera_fd = -1;
#define FRAME_BYTES (224 * 224 * 3)

int camera_open(void) {
    static const char name[] = "camera.rgb";   /* in QEMU's working directory */
    uint32_t args[3] = {(uint32_t)name, 1 /* "rb" */, sizeof name - 1};
    camera_fd = semihost(SYS_OPEN, args);
    if (camera_fd < 0) return -1;
    uint32_t a[1] = {(uint32_t)camera_fd};
    int len = semihost(SYS_FLEN, a);
    return len < 0 ? -1 : len / FRAME_BYTES;
}

int camera_read(int index, uint8_t *rgb) {
    uint32_t seek[2] = {(uint32_t)camera_fd, (uint32_t)(index * FRAME_BYTES)};
    if (semihost(SYS_SEEK, seek) != 0) return -1;
    uint32_t rd[3] = {(uint32_t)camera_fd, (uint32_t)rgb, FRAME_BYTES};
    return semihost(SYS_READ, rd) == 0 ? 0 : -1;    /* returns bytes NOT read */
}

void console_write(const char *s) { semihost(SYS_WRITE0, (void *)s); }

void port_exit(int code) {
    semihost(SYS_EXIT, (void *)(code == 0 ? 0x20026 : 0x20023));  /* ApplicationExit / RunTimeError */
    for (;;) {
    }
}
