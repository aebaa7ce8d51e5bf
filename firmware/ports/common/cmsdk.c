/* CMSDK APB UART + timer drivers, shared by the MPS2/MPS3 ports (M3, M7, M33, M55; the M55's
 * clock is the core's SysTick, PORT_TIMER_SYSTICK).
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
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

void port_init(void) {
    REG(UART0_BASE, UART_BAUDDIV) = 16;
    REG(UART0_BASE, UART_CTRL) = 0x3;
    /* A read of DATA tells QEMU the UART can take input again: bytes the host sent
     * before RX was enabled would otherwise wait about a second for QEMU to look.
     * On silicon it reads an empty register and changes nothing. */
    (void)REG(UART0_BASE, UART_DATA);
#ifdef PORT_TIMER_SYSTICK
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x5u;            /* enable, processor clock, no interrupt */
#else
    REG(TIMER0_BASE, TIMER_RELOAD) = 0xFFFFFFFFu;
    REG(TIMER0_BASE, TIMER_VALUE) = 0xFFFFFFFFu;
    REG(TIMER0_BASE, TIMER_CTRL) = 0x1;
#endif
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

#ifdef PORT_TIMER_SYSTICK
/* SysTick's 24-bit down-counter as a 32-bit up-counter: the firmware reads the clock far
 * more often than the counter wraps (2^24 ticks, half a second at 32 MHz) */
uint32_t port_ticks(void) {
    static uint32_t high, last;
    uint32_t now = 0xFFFFFFu - (SYST_CVR & 0xFFFFFFu);
    if (now < last) high += 1u << 24;
    last = now;
    return high + now;
}
#else
uint32_t port_ticks(void) { return 0xFFFFFFFFu - REG(TIMER0_BASE, TIMER_VALUE); }
#endif
