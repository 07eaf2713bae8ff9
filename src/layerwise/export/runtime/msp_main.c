/* MSP430 harness of an exported network (layerwise.export.msp430): one inference on the sample
 * in sample.h, logits left in lw_logits; lw_mark(k) runs before the network (k = 0xFFFF) and
 * after every layer k, where the cycle counter sets its breakpoint. */
#include <stdint.h>
#include LWH_HEADER
#include "sample.h"

int16_t lw_logits[LWH_OUT];
volatile uint16_t lw_layer;

void __attribute__((noinline)) lw_mark(uint16_t k)
{
    lw_layer = k;
}

int main(void)
{
    lw_mark(0xFFFFu);
    LWH_INFER(lw_sample, lw_logits);
    return 0;
}
