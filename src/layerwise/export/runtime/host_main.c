/* Host harness of an exported network (layerwise.export.host): reads N inputs of LWH_IN
 * little-endian int16 from argv[1], writes N x LWH_OUT int16 logits to argv[2]. */
#include <stdio.h>
#include <stdint.h>
#include LWH_HEADER

int main(int argc, char **argv)
{
    static int16_t in[LWH_IN];
    int16_t out[LWH_OUT];
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS.bin LOGITS.bin\n", argv[0]);
        return 2;
    }
    FILE *fi = fopen(argv[1], "rb"), *fo = fopen(argv[2], "wb");
    if (!fi || !fo) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    while (fread(in, sizeof in[0], LWH_IN, fi) == LWH_IN) {
        LWH_INFER(in, out);
        if (fwrite(out, sizeof out[0], LWH_OUT, fo) != LWH_OUT) {
            fprintf(stderr, "cannot write %s\n", argv[2]);
            return 2;
        }
    }
    fclose(fi);
    return fclose(fo) ? 2 : 0;
}
