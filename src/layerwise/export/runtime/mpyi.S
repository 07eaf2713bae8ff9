; __mspabi_mpyi / __mspabi_mpyi_hw: the MSP430 EABI 16 x 16 -> 16-bit multiply helpers that clang
; calls for a multiplication it cannot turn into shifts and adds (index arithmetic outside the
; MAC loops, e.g. a channel index times a plane size). a in r12, b in r13, product in r12. The low
; 16 bits of a product are the same signed or unsigned. Linked into every MSP430 build; the MAC
; itself uses lw_mul16 (software build) or the MPYS registers (hardware build).
        .text
        .global __mspabi_mpyi
__mspabi_mpyi:                          ; shift-and-add, one step per bit of b (as unsigned)
        mov     r12, r14
        clr     r12
1:      tst     r13
        jz      3f
        clrc
        rrc     r13
        jnc     2f
        add     r14, r12
2:      rla     r14
        jmp     1b
3:      ret

        .global __mspabi_mpyi_hw
__mspabi_mpyi_hw:                       ; the memory-mapped multiplier: MPY, OP2, RESLO
        mov     r12, &0x0130
        mov     r13, &0x0138
        mov     &0x013a, r12
        ret
