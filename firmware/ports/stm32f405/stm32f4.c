/* STM32F405 drivers: clock tree (HSE + PLL to 168 MHz, falling back to the 16 MHz
 * internal oscillator when the crystal does not start), USART1 at 921600 baud on
 * PA9/PA10, and TIM2 as port_ticks().  Polled, no interrupts.  Registers: RM0090. */
#include "port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC 0x40023800u
#define RCC_CR REG(RCC + 0x00)
#define RCC_PLLCFGR REG(RCC + 0x04)
#define RCC_CFGR REG(RCC + 0x08)
#define RCC_AHB1ENR REG(RCC + 0x30)
#define RCC_APB1ENR REG(RCC + 0x40)
#define RCC_APB2ENR REG(RCC + 0x44)
#define FLASH_ACR REG(0x40023C00u)
#define GPIOA 0x40020000u
#define GPIOA_MODER REG(GPIOA + 0x00)
#define GPIOA_AFRH REG(GPIOA + 0x24)
#define USART1 0x40011000u
#define USART_SR REG(USART1 + 0x00)       /* RXNE bit 5, TXE bit 7 */
#define USART_DR REG(USART1 + 0x04)
#define USART_BRR REG(USART1 + 0x08)
#define USART_CR1 REG(USART1 + 0x0C)      /* UE bit 13, TE bit 3, RE bit 2 */
#define TIM2 0x40000000u
#define TIM2_CR1 REG(TIM2 + 0x00)
#define TIM2_EGR REG(TIM2 + 0x14)
#define TIM2_CNT REG(TIM2 + 0x24)
#define TIM2_PSC REG(TIM2 + 0x28)
#define TIM2_ARR REG(TIM2 + 0x2C)
#define BAUD 921600u

static int wait_set(volatile uint32_t *reg, uint32_t mask) {
    for (uint32_t n = 0; n < 100000u; n++)
        if (*reg & mask) return 1;
    return 0;
}

/* Returns the APB2 clock (USART1's). */
static uint32_t clock_init(void) {
    RCC_CR |= 1u << 16;                                   /* HSEON */
    if (!wait_set(&RCC_CR, 1u << 17)) return 16000000u;   /* no HSERDY: stay on HSI, no prescalers */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10);  /* 5 wait states at 168 MHz, prefetch, caches */
    RCC_PLLCFGR = 25u | (336u << 6) | (0u << 16) | (1u << 22) | (7u << 24);   /* M, N, P=2, HSE, Q */
    RCC_CFGR = (5u << 10) | (4u << 13);                   /* APB1 = HCLK/4 (42 MHz), APB2 = HCLK/2 (84 MHz) */
    RCC_CR |= 1u << 24;                                   /* PLLON */
    if (!wait_set(&RCC_CR, 1u << 25)) return 16000000u;
    RCC_CFGR |= 2u;                                       /* system clock = PLL */
    return SYSCLK_HZ / 2;
}

void port_init(void) {
    uint32_t apb2 = clock_init();
    RCC_AHB1ENR |= 1u << 0;                               /* GPIOA */
    RCC_APB1ENR |= 1u << 0;                               /* TIM2 */
    RCC_APB2ENR |= 1u << 4;                               /* USART1 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);        /* PA9, PA10: alternate function */
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);          /* AF7 = USART1 */
    USART_BRR = (apb2 + BAUD / 2) / BAUD;                 /* oversampling by 16: BRR = f / baud */
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2);
    TIM2_PSC = 0;
    TIM2_ARR = 0xFFFFFFFFu;
    TIM2_EGR = 1u;                                        /* load the prescaler */
    TIM2_CR1 = 1u;
}

void mcu_port_putc(uint8_t c) {
    while (!(USART_SR & (1u << 7))) {
    }
    USART_DR = c;
}

int port_uart_getc(void) {
    if (USART_SR & (1u << 5)) return (int)(USART_DR & 0xFF);
    return -1;
}

uint32_t port_ticks(void) { return TIM2_CNT; }

#ifdef PORT_HW_RNG
/* 32 bytes of the hardware RNG (RM0090 section 24): RNGEN, then eight 32-bit words, each
 * after DRDY, refusing any word taken while a clock or seed error is flagged (CECS, SECS).
 * The first word after enabling is discarded, and no word may equal the one before it
 * (the reference manual's continuous test).  0 when the generator does not deliver (no
 * 48 MHz clock: the crystal did not start), and the device then runs on its boot counter. */
#define RCC_AHB2ENR REG(RCC + 0x34)
#define RNG_CR REG(0x50060800u)
#define RNG_SR REG(0x50060804u)
#define RNG_DR REG(0x50060808u)

static int rng_word(uint32_t *w) {
    for (uint32_t n = 0; n < 100000u; n++) {
        uint32_t sr = RNG_SR;
        if (sr & 0x6u) return 0;                 /* CECS or SECS */
        if (sr & 1u) { *w = RNG_DR; return 1; }
    }
    return 0;
}

int port_hw_rng(uint8_t seed[32]) {
    RCC_AHB2ENR |= 1u << 6;                      /* RNGEN clock */
    RNG_CR |= 1u << 2;                           /* RNGEN */
    uint32_t prev, w;
    if (!rng_word(&prev)) return 0;
    for (int i = 0; i < 8; i++) {
        if (!rng_word(&w) || w == prev) return 0;
        seed[4 * i] = (uint8_t)w; seed[4 * i + 1] = (uint8_t)(w >> 8);
        seed[4 * i + 2] = (uint8_t)(w >> 16); seed[4 * i + 3] = (uint8_t)(w >> 24);
        prev = w;
    }
    return 1;
}
#endif
