; layerwise export: start-up for `mspdebug sim`. Sets the stack, clears .bss, calls main, then
; spins at the global label `done` (the cycle counter's last breakpoint). .data is loaded by
; mspdebug's `prog` straight into the simulated RAM.
        .section .text.start,"ax",@progbits
        .global _start
_start:
        mov     #0x5000, r1
        mov     #__bss_start, r12
1:      cmp     #__bss_end, r12
        jhs     2f
        clr     0(r12)
        incd    r12
        jmp     1b
2:      call    #main
        .global done
done:
        jmp     done

        .section .vectors,"a",@progbits
        .word   _start                  ; reset vector at 0xFFFE
