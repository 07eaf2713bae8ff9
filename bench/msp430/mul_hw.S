; __mspabi_mpyl_hw: 32 x 32 -> low 32 bits with the 16-bit hardware multiplier
; (MPY 0x0130, OP2 0x0138, RESLO 0x013A, RESHI 0x013C; clang calls it under
; -mhwmult=16bit). a in r13:r12, b in r15:r14, result in r13:r12.
;   lo32(a*b) = a_lo*b_lo + ((a_lo*b_hi + a_hi*b_lo) << 16)
        .text
        .global __mspabi_mpyl_hw
__mspabi_mpyl_hw:
        mov     r12, &0x0130            ; MPY  = a_lo (unsigned)
        mov     r15, &0x0138            ; OP2  = b_hi
        mov     &0x013A, r11            ; r11  = lo16(a_lo*b_hi)
        mov     r13, &0x0130            ; MPY  = a_hi
        mov     r14, &0x0138            ; OP2  = b_lo
        add     &0x013A, r11            ; r11 += lo16(a_hi*b_lo)
        mov     r12, &0x0130            ; MPY  = a_lo
        mov     r14, &0x0138            ; OP2  = b_lo
        mov     &0x013A, r12            ; result lo
        mov     &0x013C, r13
        add     r11, r13                ; result hi
        ret
