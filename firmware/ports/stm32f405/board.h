/* STM32F405 (Cortex-M4F with DSP), as QEMU's netduinoplus2 models it: USART1 on
 * PA9/PA10 (QEMU's first serial port), TIM2 as the free-running 32-bit timer.
 * Registers: RM0090, the STM32F405/415/407/417 reference manual. */
#define HSE_HZ 25000000u        /* the Netduino Plus 2's crystal */
#define SYSCLK_HZ 168000000u    /* PLL: 25 MHz / 25 * 336 / 2 */
#define TARGET_ID 4
/* TIM2 runs at its timer clock (84 MHz on the part). QEMU's STM32F2xx timer model
 * counts at 1 GHz of virtual time whatever the clock tree says, so the QEMU build
 * uses that rate (-DQEMU_TIMER_HZ) to make one tick one instruction under -icount. */
#ifdef QEMU_TIMER_HZ
#define TIMER_HZ QEMU_TIMER_HZ
#else
#define TIMER_HZ 84000000u
#endif
#define INSTR_PER_TICK 1u
/* The part's true random generator (RNG at 0x50060800, clocked by the PLL's 48 MHz
 * output): the device nonce's seed on silicon.  QEMU's netduinoplus2 does not model it,
 * so the QEMU build takes the host's per-launch seed file instead (common/semihost.c). */
#ifndef QEMU_TIMER_HZ
#define PORT_HW_RNG 1
#endif
