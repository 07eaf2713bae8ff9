; __mspabi_divul: unsigned 32 / 32 -> 32-bit quotient, restoring shift-subtract,
; a fixed 32 iterations (the MSP430 hardware multiplier has no divider).
; Dividend in r13:r12, divisor in r15:r14, quotient in r13:r12.
        .text
        .global __mspabi_divul
__mspabi_divul:
        push    r10
        push    r9
        clr     r10                     ; remainder in r11:r10
        clr     r11
        mov     #32, r9
1:      rla     r12                     ; dividend/quotient <<= 1, top bit ...
        rlc     r13
        rlc     r10                     ; ... into the remainder
        rlc     r11
        jc      2f                      ; remainder overflowed 32 bits: subtract
        cmp     r15, r11
        jlo     3f                      ; rem_hi < div_hi: no subtract
        jne     2f
        cmp     r14, r10
        jlo     3f
2:      sub     r14, r10
        subc    r15, r11
        bis     #1, r12                 ; quotient bit
3:      dec     r9
        jnz     1b
        pop     r9
        pop     r10
        ret
