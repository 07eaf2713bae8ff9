; lw_mul16: int16 x int16 -> int32 by software shift-and-add (no multiplier), for the exported
; networks' software-multiply MSP430 build. MSP430 EABI: a in r12, b in r13, result in r13:r12;
; r10 is callee-saved. If b < 0 both operands are negated (the product is unchanged); then one
; step per bit of |b| (as unsigned, so b = -32768 works), stopping when no set bit is left (as
; libgcc's routine does): the cost grows with the bit length of |b|, here the weight.
        .text
        .global lw_mul16
lw_mul16:
        push    r10
        mov     r12, r14                ; A = sign-extended a in r15:r14
        mov     r12, r15
        rla     r15                     ; carry = sign of a
        subc    r15, r15                ; r15 = carry - 1
        inv     r15                     ; 0xFFFF if a < 0, else 0
        tst     r13
        jge     1f
        inv     r13                     ; b = -b
        inc     r13
        inv     r14                     ; A = -A
        inv     r15
        inc     r14
        adc     r15
1:      clr     r10                     ; result in r11:r10
        clr     r11
        tst     r13
        jz      4f
2:      clrc
        rrc     r13                     ; next bit of |b| into carry
        jnc     3f
        add     r14, r10                ; result += A
        addc    r15, r11
3:      rla     r14                     ; A <<= 1
        rlc     r15
        tst     r13
        jnz     2b
4:      mov     r10, r12
        mov     r11, r13
        pop     r10
        ret
