/* Minimal Cortex-M start-up: vector table, .data copy, .bss clear, stack painting. */
#include <stddef.h>
#include <stdint.h>

#include "port.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack, _stack_limit, _flash_end, _flash_start;
int main(void);

#define STACK_PAINT 0xA5A5A5A5u

void Reset_Handler(void) {
#if defined(__ARM_FEATURE_MVE) && __ARM_FEATURE_MVE
    /* CPACR: CP10 and CP11 full access, first: Helium shares the FPU's registers, and the
     * compiler may vectorise the copy loops below */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++) *dst = 0;
    /* paint the stack region below our own frame, to measure the peak later */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &_stack_limit; p < sp - 16; p++) *p = STACK_PAINT;
    port_exit(main());
}

uint32_t port_stack_peak(void) {
    uint32_t *p = &_stack_limit;
    while (p < &_estack && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

uint32_t port_static_ram(void) { return (uint32_t)((uintptr_t)&_ebss - (uintptr_t)&_sdata); }
uint32_t port_flash_used(void) {
    return (uint32_t)((uintptr_t)&_sidata - (uintptr_t)&_flash_start + ((uintptr_t)&_edata - (uintptr_t)&_sdata));
}

static void Default_Handler(void) {
    console_write("fault\n");
    port_exit(1);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    Default_Handler,
};

/* The compiler may emit calls to these even with -ffreestanding. */
void *memcpy(void *d, const void *s, size_t n) {
    uint8_t *dd = d;
    const uint8_t *ss = s;
    while (n--) *dd++ = *ss++;
    return d;
}
void *memset(void *d, int c, size_t n) {
    uint8_t *dd = d;
    while (n--) *dd++ = (uint8_t)c;
    return d;
}
