/* QEMU mps3-an547: Cortex-M55 (SSE-300, secure world), Helium (MVE) and the DSP extension:
 * the Alif Ensemble / STM32N6 / Himax WE2 class of camera MCUs.  UART0 is a CMSDK UART
 * (secure alias); the clock is the core's SysTick at the 32 MHz system clock, which every
 * Cortex-M55 part has (the SSE-300's timers sit behind its own counter set-up). */
#define UART0_BASE 0x59303000u
#define PORT_TIMER_SYSTICK 1
#define TIMER_HZ 32000000u
#define TARGET_ID 5
/* -icount shift=0: 1 instruction = 1 ns; a 32 MHz tick = 31.25 ns */
#define TICKS_TO_INSTR(t) ((uint32_t)((uint64_t)(t) * 125u / 4u))
