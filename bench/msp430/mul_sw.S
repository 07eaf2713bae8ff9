; __mspabi_mpyl: 32 x 32 -> low 32 bits, software shift-and-add (no multiplier).
; MSP430 EABI: a in r13:r12, b in r15:r14, result in r13:r12; r11-r15 are
; caller-saved, r10 is callee-saved.
; If b < 0 both operands are negated (the product mod 2^32 is unchanged), so the
; loop runs once per bit of |b| and stops when no bits are left: for operands
; sign-extended from int16 that is at most 16 iterations.
        .text
        .global __mspabi_mpyl
__mspabi_mpyl:
        push    r10
        tst     r15
        jge     1f
        inv     r14                     ; b = -b
        inv     r15
        inc     r14
        adc     r15
        inv     r12                     ; a = -a
        inv     r13
        inc     r12
        adc     r13
1:      clr     r10                     ; result in r11:r10
        clr     r11
2:      clrc
        rrc     r15                     ; b >>= 1, its low bit into carry
        rrc     r14
        jnc     3f
        add     r12, r10                ; result += a
        addc    r13, r11
3:      rla     r12                     ; a <<= 1
        rlc     r13
        tst     r14
        jnz     2b
        tst     r15
        jnz     2b
        mov     r10, r12
        mov     r11, r13
        pop     r10
        ret
