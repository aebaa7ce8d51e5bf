/* What a board port provides to the frame loop (firmware/ports/common/main.c). */
#ifndef MCU_PORT_H
#define MCU_PORT_H
#include <stdint.h>

#include "board.h"     /* per board: UART0_BASE, TIMER0_BASE, TIMER_HZ, TARGET_ID, INSTR_PER_TICK */

/* timer ticks -> instructions under QEMU -icount shift=0 (1 instruction = 1 ns) */
#ifndef TICKS_TO_INSTR
#define TICKS_TO_INSTR(t) ((t) * INSTR_PER_TICK)
#endif

void port_init(void);
int port_uart_getc(void);                      /* -1 when nothing was received */
uint32_t port_ticks(void);                     /* free-running timer, counts up */
/* The camera's configuration: its picture size (*width x *height); returns the number of
 * frames, < 0 on error. */
int camera_open(int *width, int *height);
int camera_start(int index);                   /* begin frame `index`; 0 on success */
/* Row y (0..height-1, in order) of the current frame: width RGB pixels, 3 bytes each,
 * into dst (an mcu_row_reader, see mcu_codec.h); 0 on success. */
int camera_read_row(void *ctx, int y, uint8_t *dst);
void console_write(const char *s);             /* debug/report text (semihosting) */
void port_exit(int code);                      /* end of run (QEMU: semihosting exit) */
uint32_t port_stack_peak(void);                /* bytes of stack ever used */
uint32_t port_static_ram(void);                /* .data + .bss bytes */
uint32_t port_flash_used(void);                /* text + rodata + data image bytes */
/* Protocol 2 (core/mcu_link.h).  QEMU ports keep these in files by semihosting, in
 * place of flash: link.key (the 32-byte device key), boot.count, device.id; and rng.seed,
 * the host's per-launch seed, stands in for the part's random generator. */
int port_key_load(uint8_t key[32]);            /* 1 when the device has a key */
int port_key_store(const uint8_t key[32]);     /* provisioning; 0 on success */
int port_boot_count(uint32_t *count);          /* counts this boot and commits it to storage: 0 when committed */
int port_entropy(uint8_t seed[32]);            /* 1: 32 bytes of the part's true random generator */
void port_device_id(uint8_t id[16]);           /* the part's serial number (public identity) */
#endif
