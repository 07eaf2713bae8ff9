; Start-up for the mspdebug-sim cycle benchmark (bench/msp430_cycles.py).
; Sets the stack, calls main, then spins at the global label `done`, where the
; Python driver puts its breakpoint. No .data copy / .bss clear: mspdebug's
; `prog` loads .data straight into the simulated RAM, and main clears what it uses.
        .section .text.start,"ax",@progbits
        .global _start
_start:
        mov     #0x3000, r1
        call    #main
        .global done
done:
        jmp     done

        .section .vectors,"a",@progbits
        .word   _start                  ; reset vector at 0xFFFE
