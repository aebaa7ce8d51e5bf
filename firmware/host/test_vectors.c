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

static int rgb_row(void *ctx, int y, uint8_t *dst) {
    memcpy(dst, (const uint8_t *)ctx + (size_t)y * mcu_geo.width * 3, (size_t)mcu_geo.width * 3);
    return 0;
}

int main(int argc, char **argv) {
    /* usage: test_vectors DIR [NAME[@WxH]...]; names default to the manifest's three
     * 224x224 vectors, each encoded with its index as the sequence number; @WxH: a
     * picture of that size (test/vectors/sized, bitstream version 3) */
    const char *dir = argc > 1 ? argv[1] : "../test/vectors";
    static const char *defaults[] = {"astronaut", "road", "extremes"};
    const char **names = argc > 2 ? (const char **)argv + 2 : defaults;
    int n_names = argc > 2 ? argc - 2 : 3;
    static uint8_t rgb[MCU_MAX_WIDTH * MCU_MAX_HEIGHT * 3], ref[MCU_MAX_FRAME], frame[MCU_MAX_FRAME];
    static int8_t latent[MCU_CHANNELS * MCU_MAX_SYMBOLS];
    static uint8_t sym[MCU_CHANNELS * MCU_MAX_SYMBOLS];
    int failures = 0;
    for (int v = 0; v < n_names; v++) {
        char name[256];
        int w = 224, h = 224;
        snprintf(name, sizeof name, "%s", names[v]);
        char *at = strchr(name, '@');
        if (at) {
            if (sscanf(at + 1, "%dx%d", &w, &h) != 2) { printf("FAIL %s: bad size\n", names[v]); return 1; }
            *at = 0;
        }
        if (mcu_set_geometry(w, h, 0) != MCU_OK) {
            printf("FAIL %s: %dx%d is outside this build's maximum %dx%d\n", name, w, h, MCU_MAX_WIDTH, MCU_MAX_HEIGHT);
            return 1;
        }
        long bytes = (long)w * h * 3, n = (long)MCU_CHANNELS * mcu_geo.n;
        if (read_file(dir, name, "rgb", rgb, sizeof rgb) != bytes) {
            printf("FAIL %s: short input\n", name);
            return 1;
        }
        mcu_encode_latent(rgb, latent);
        read_file(dir, name, "latent", ref, sizeof ref);
        failures += compare("latent", name, (uint8_t *)latent, ref, n);
        mcu_quantize(latent, 12, sym);
        read_file(dir, name, "sym", ref, sizeof ref);
        failures += compare("symbols", name, sym, ref, n);
        /* the firmware's path: quantised row by row into packed symbols */
        static uint8_t packed[MCU_CHANNELS * MCU_MAX_PACKED];
        mcu_encode_symbols_rows(rgb_row, rgb, packed);
        for (int c = 0; c < MCU_CHANNELS; c++)
            for (int i = 0; i < mcu_geo.n; i++)
                sym[c * mcu_geo.n + i] = (uint8_t)mcu_packed_get(packed + c * MCU_PACKED_BYTES(mcu_geo.n), i);
        failures += compare("packed symbols", name, sym, ref, n);
        long n_ref = read_file(dir, name, "mcf", ref, sizeof ref);
        size_t len = mcu_encode_frame(rgb, 12, (uint32_t)v, frame);
        if ((long)len != n_ref) {
            printf("FAIL %s frame length %zu != %ld\n", name, len, n_ref);
            failures++;
        } else {
            failures += compare("frame", name, frame, ref, n_ref);
        }
    }
    printf("%s: %d vectors, %d failures (model %08x, %s kernels)\n", failures ? "FAIL" : "OK", n_names, failures,
           (unsigned)mcu_model_id(), MCU_KERNELS);
    return failures ? 1 : 0;
}
