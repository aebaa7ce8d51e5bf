/* Host test: the C encoder reproduces test/vectors/ byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcu_codec.h"

static long read_file(const char *dir, const char *name, const char *ext, uint8_t *buf, long cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    long n = (long)fread(buf, 1, (size_t)cap, f);
    fclose(f);
    return n;
}

static int compare(const char *what, const char *name, const uint8_t *a, const uint8_t *b, long n) {
    for (long i = 0; i < n; i++)
        if (a[i] != b[i]) {
            printf("FAIL %s %s: first difference at byte %ld (%d != %d)\n", name, what, i, a[i], b[i]);
            return 1;
        }
    return 0;
}

int main(int argc, char **argv) {
    /* usage: test_vectors DIR [NAME...]; names default to the manifest's three vectors,
     * each encoded with its index as the sequence number */
    const char *dir = argc > 1 ? argv[1] : "../test/vectors";
    static const char *defaults[] = {"astronaut", "road", "extremes"};
    const char **names = argc > 2 ? (const char **)argv + 2 : defaults;
    int n_names = argc > 2 ? argc - 2 : 3;
    static uint8_t rgb[224 * 224 * 3], ref[MCU_MAX_FRAME], frame[MCU_MAX_FRAME];
    static int8_t latent[12][28][28];
    static uint8_t sym[12][28][28];
    int failures = 0;
    for (int v = 0; v < n_names; v++) {
        const char *name = names[v];
        if (read_file(dir, name, "rgb", rgb, sizeof rgb) != (long)sizeof rgb) {
            printf("FAIL %s: short input\n", name);
            return 1;
        }
        mcu_encode_latent(rgb, latent);
        read_file(dir, name, "latent", ref, sizeof ref);
        failures += compare("latent", name, (uint8_t *)latent, ref, sizeof latent);
        mcu_quantize(latent, 12, sym);
        read_file(dir, name, "sym", ref, sizeof ref);
        failures += compare("symbols", name, (uint8_t *)sym, ref, sizeof sym);
        long n_ref = read_file(dir, name, "mcf", ref, sizeof ref);
        size_t n = mcu_encode_frame(rgb, 12, (uint32_t)v, frame);
        if ((long)n != n_ref) {
            printf("FAIL %s frame length %zu != %ld\n", name, n, n_ref);
            failures++;
        } else {
            failures += compare("frame", name, frame, ref, n_ref);
        }
    }
    printf("%s: %d vectors, %d failures (model %08x, %s kernels)\n", failures ? "FAIL" : "OK", n_names, failures,
           (unsigned)mcu_model_id(), MCU_KERNELS);
    return failures ? 1 : 0;
}
