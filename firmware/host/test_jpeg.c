/* Host build of the firmware's JPEG encoder: test_jpeg RGB_FILE QUALITY OUT.jpg
 * encodes the first 224x224 frame of RGB_FILE (the test checks it with OpenCV). */
#include <stdio.h>
#include <stdlib.h>

#include "mcu_jpeg.h"

static uint8_t rgb[224 * 224 * 3];

static int frame_row(void *ctx, int y, uint8_t *dst) {
    (void)ctx;
    for (int i = 0; i < 224 * 3; i++) dst[i] = rgb[y * 224 * 3 + i];
    return 0;
}

static void to_file(void *ctx, const uint8_t *data, size_t n) { fwrite(data, 1, n, (FILE *)ctx); }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_jpeg RGB_FILE QUALITY OUT.jpg\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(rgb, 1, sizeof rgb, f) != sizeof rgb) {
        fprintf(stderr, "cannot read a 224x224 RGB frame from %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    FILE *o = fopen(argv[3], "wb");
    if (!o) return 2;
    size_t n = mcu_jpeg_encode_rows(frame_row, 0, atoi(argv[2]), to_file, o);
    fclose(o);
    printf("%zu bytes\n", n);
    return n ? 0 : 1;
}
