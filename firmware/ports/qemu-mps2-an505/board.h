/* QEMU mps2-an505: Cortex-M33 (secure world), the nRF5340 class of the paper. */
#define UART0_BASE 0x50200000u
#define TIMER0_BASE 0x50000000u
#define TIMER_HZ 20000000u
#define TARGET_ID 2
#define INSTR_PER_TICK 50u      /* -icount shift=0: 1 instruction = 1 ns; timer tick = 50 ns */
