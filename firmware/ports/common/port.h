/* What a board port provides to the frame loop (firmware/ports/common/main.c). */
#ifndef MCU_PORT_H
#define MCU_PORT_H
#include <stdint.h>

#include "board.h"     /* per board: UART0_BASE, TIMER0_BASE, TIMER_HZ, TARGET_ID, INSTR_PER_TICK */

void port_init(void);
int port_uart_getc(void);                      /* -1 when nothing was received */
uint32_t port_ticks(void);                     /* free-running timer, counts up */
int camera_open(void);                         /* returns number of frames, < 0 on error */
int camera_read(int index, uint8_t *rgb);      /* one 224x224x3 frame; 0 on success */
void console_write(const char *s);             /* debug/report text (semihosting) */
void port_exit(int code);                      /* end of run (QEMU: semihosting exit) */
uint32_t port_stack_peak(void);                /* bytes of stack ever used */
uint32_t port_static_ram(void);                /* .data + .bss bytes */
uint32_t port_flash_used(void);                /* text + rodata + data image bytes */
#endif
