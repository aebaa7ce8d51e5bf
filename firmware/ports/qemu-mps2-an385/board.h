/* QEMU mps2-an385: Cortex-M3, a core without the DSP extension (the portable kernels). */
#define UART0_BASE 0x40004000u
#define TIMER0_BASE 0x40000000u
#define TIMER_HZ 25000000u
#define TARGET_ID 3
#define INSTR_PER_TICK 40u      /* -icount shift=0: 1 instruction = 1 ns; timer tick = 40 ns */
