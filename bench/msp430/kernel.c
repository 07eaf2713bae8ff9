/* Cycle-benchmark kernels for bench/msp430_cycles.py: one int16 Linear (N inputs, M outputs,
 * Q-format operands, 32-bit accumulators), kinds 0-1 in UnIT's input-stationary order; the driver
 * builds one ELF per variant and size and counts MCLK cycles under `mspdebug sim`.
 *
 * Compile-time switches (set by the driver):
 *   KIND  0 dense: every MAC, no tests
 *         1 unit : per input x_p: skip the row if x_p == 0; t = T / |x_p| once (exact unsigned
 *                  32/32 division, clamped to 16 bits); per output j: MAC iff |w[p][j]| > t,
 *                  tested as w > tp || w < tn with tp = min(t, 32767), tn = -tp (or INT16_MIN
 *                  when t > 32767), which is |w| > t for every int16 w
 *         2 div  : per input: sink = clamp(T / |x_p|)  (division micro-benchmark)
 *         3 nodiv: per input: sink = clamp(T)          (the same loop without the division)
 *         4 dense_os: dense in OUTPUT-stationary order (for each output j: for each input p),
 *                  the accumulator in registers (sw) or in the multiplier's MACS accumulator
 *                  (hw: RESHI:RESLO cleared per output, MACS = x_p, OP2 = w per MAC), weights
 *                  read from the transposed copy WT so they stream; the best dense baseline
 *   MUL   0 sw    : __mspabi_mpyl (software shift-and-add, mul_sw.S), the helper clang calls
 *                   for a 32-bit multiply; called here by name with w first, x second
 *         1 hw    : the 16-bit memory-mapped multiplier, written inline: MPYS = x_p once per
 *                   row (input-stationary reuse of operand 1), OP2 = w per MAC, then
 *                   acc += RESHI:RESLO straight from the result registers
 *         2 hwcall: __mspabi_mpyl_hw (mul_hw.S: 3 multiplies), the helper clang calls for a
 *                   32-bit multiply under -mhwmult=16bit
 * n, m and T come from volatile globals so the compiler cannot specialise loops on them;
 * data.h (generated) holds X[NMAX], W[NMAX][MMAX], WT[MMAX][NMAX] (KIND 4 only) and the
 * N_RUN / M_RUN / T_RUN values.
 *
 * Two small inline-assembly helpers stand in for code clang 14's msp430 backend writes badly:
 * the 32-bit accumulate (clang materialises the carry with cmp / bic instead of using addc,
 * ~5 extra cycles) and the int16 -> int32 sign extension (clang: swpb, sxt and 7 x rra).
 * They are what GCC or a hand-written kernel emits, and they are identical in every variant.
 */
#include <stdint.h>
#include "data.h"

#define MPYS_ADDR 0x0132
#define OP2_ADDR  0x0138
#define MPYS  (*(volatile int16_t *)MPYS_ADDR)
#define MACS  (*(volatile int16_t *)0x0136)
#define OP2   (*(volatile int16_t *)OP2_ADDR)
#define RESLO (*(volatile uint16_t *)0x013A)
#define RESHI (*(volatile uint16_t *)0x013C)

volatile uint16_t g_n = N_RUN;
volatile uint16_t g_m = M_RUN;
volatile uint32_t g_T = T_RUN;
volatile uint16_t g_sink_t;
volatile uint16_t g_sink_ax;
int32_t acc[MMAX];

/* *a += v with add / addc into memory. */
static inline void acc_add(int32_t *a, int32_t v)
{
    uint16_t lo = (uint16_t)v, hi = (uint16_t)((uint32_t)v >> 16);
    __asm__ volatile("add %1, 0(%0)\n\taddc %2, 2(%0)" : : "r"(a), "r"(lo), "r"(hi) : "memory");
}

/* (int32_t)v: high word = 0 or 0xFFFF from the sign bit (rla; subc; inv). */
static inline int32_t sext32(int16_t v)
{
    uint16_t hi;
    __asm__("mov %1, %0\n\trla %0\n\tsubc %0, %0\n\tinv %0" : "=&r"(hi) : "r"(v));
    return (int32_t)(((uint32_t)hi << 16) | (uint16_t)v);
}

#if MUL == 1
#define ROW_SETUP(xp) (MPYS = (xp))
#define MAC(a, xp32, wj)                                                           \
    do {                                                                           \
        OP2 = (wj);                                                                \
        __asm__ volatile("add &0x013A, 0(%0)\n\taddc &0x013C, 2(%0)"              \
                         : : "r"(a) : "memory");                                   \
    } while (0)
#else
/* The EABI multiply helper, called with a fixed operand order (w first, x second), so that the
 * software routine always loops over the bits of |x| whichever loop order the kernel has. */
#if MUL == 2
extern int32_t mul32(int32_t w, int32_t x) __asm__("__mspabi_mpyl_hw");
#else
extern int32_t mul32(int32_t w, int32_t x) __asm__("__mspabi_mpyl");
#endif
#define ROW_SETUP(xp) ((void)0)
#define MAC(a, xp32, wj) acc_add((a), mul32(sext32(wj), (xp32)))
#endif

static inline uint16_t abs16(int16_t v) { return v < 0 ? (uint16_t)(-(uint16_t)v) : (uint16_t)v; }

static inline uint16_t clamp16(uint32_t q) { return q > 0xFFFFu ? 0xFFFFu : (uint16_t)q; }

#if KIND == 0
static void __attribute__((noinline)) kernel(uint16_t n, uint16_t m, uint32_t T)
{
    (void)T;
    const int16_t *wr = &W[0][0];
    for (uint16_t p = 0; p < n; p++, wr += MMAX) {
        int16_t xp = X[p];
        int32_t xp32 = sext32(xp);
        (void)xp32;
        ROW_SETUP(xp);
#pragma clang loop unroll(disable) vectorize(disable)
        for (uint16_t j = 0; j < m; j++)
            MAC(&acc[j], xp32, wr[j]);
    }
}
#elif KIND == 1
static void __attribute__((noinline)) kernel(uint16_t n, uint16_t m, uint32_t T)
{
    const int16_t *wr = &W[0][0];
    for (uint16_t p = 0; p < n; p++, wr += MMAX) {
        int16_t xp = X[p];
        if (xp == 0)
            continue;
        uint16_t t = clamp16(T / (uint32_t)abs16(xp));
        int16_t tp = t > 0x7FFFu ? 0x7FFF : (int16_t)t;
        int16_t tn = t > 0x7FFFu ? INT16_MIN : (int16_t)-tp;
        int32_t xp32 = sext32(xp);
        (void)xp32;
        ROW_SETUP(xp);
#pragma clang loop unroll(disable) vectorize(disable)
        for (uint16_t j = 0; j < m; j++) {
            int16_t wj = wr[j];
            if (wj > tp || wj < tn)
                MAC(&acc[j], xp32, wj);
        }
    }
}
#elif KIND == 2 || KIND == 3
static void __attribute__((noinline)) kernel(uint16_t n, uint16_t m, uint32_t T)
{
    (void)m;
#pragma clang loop unroll(disable) vectorize(disable)
    for (uint16_t p = 0; p < n; p++) {
        uint16_t ax = abs16(X[p]);
        g_sink_ax = ax;
#if KIND == 2
        g_sink_t = clamp16(T / (uint32_t)ax);
#else
        g_sink_t = clamp16(T);
#endif
    }
}
#elif KIND == 4
static void __attribute__((noinline)) kernel(uint16_t n, uint16_t m, uint32_t T)
{
    (void)T;
    const int16_t *wc = &WT[0][0];
    for (uint16_t j = 0; j < m; j++, wc += NMAX) {
        const int16_t *xp = X, *wp = wc;
#if MUL == 1
        /* Streaming MAC loop in assembly (clang folds the two pointers into one index and
         * pays ~6 more cycles per MAC): MACS = *x++; OP2 = *w++; until n inputs are done.
         * LLVM 14's assembler rejects "mov @Rn+, &abs", so those two are spelled as words. */
        RESLO = 0;
        RESHI = 0;
        if (n)
            __asm__ volatile("mov %0, r13\n\t"
                             "mov %1, r14\n\t"
                             "mov %2, r15\n"
                             "1:\n\t"
                             ".word 0x4db2, 0x0136\n\t"   /* mov @r13+, &MACS */
                             ".word 0x4eb2, 0x0138\n\t"   /* mov @r14+, &OP2  */
                             "dec r15\n\t"
                             "jnz 1b"
                             : : "r"(xp), "r"(wp), "r"(n) : "r13", "r14", "r15", "memory");
        acc[j] = (int32_t)(((uint32_t)RESHI << 16) | RESLO);
#else
        uint16_t lo = 0, hi = 0;
#pragma clang loop unroll(disable) vectorize(disable)
        for (uint16_t p = 0; p < n; p++) {
            int32_t v = mul32(sext32(*wp++), sext32(*xp++));
            __asm__("add %2, %0\n\taddc %3, %1" : "+r"(lo), "+r"(hi)
                    : "r"((uint16_t)v), "r"((uint16_t)((uint32_t)v >> 16)));
        }
        acc[j] = (int32_t)(((uint32_t)hi << 16) | lo);
#endif
    }
}
#else
#error "KIND must be 0..4"
#endif

int main(void)
{
    uint16_t n = g_n, m = g_m;
    uint32_t T = g_T;
#pragma clang loop unroll(disable) vectorize(disable)
    for (uint16_t j = 0; j < m; j++)
        ((volatile int32_t *)acc)[j] = 0;   /* volatile: no memset call */
    kernel(n, m, T);
    return 0;
}
