/* Host build of the firmware's JPEG encoder: test_jpeg RGB_FILE QUALITY OUT.jpg [WxH]
 * encodes the first frame (224x224 unless WxH says otherwise) of RGB_FILE (the test
 * checks it with OpenCV). */
#include <stdio.h>
#include <stdlib.h>

#include "mcu_jpeg.h"

static uint8_t rgb[MCU_MAX_WIDTH * MCU_MAX_HEIGHT * 3];
static int width = 224, height = 224;

static int frame_row(void *ctx, int y, uint8_t *dst) {
    (void)ctx;
    for (int i = 0; i < width * 3; i++) dst[i] = rgb[y * width * 3 + i];
    return 0;
}

static void to_file(void *ctx, const uint8_t *data, size_t n) { fwrite(data, 1, n, (FILE *)ctx); }

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: test_jpeg RGB_FILE QUALITY OUT.jpg [WxH]\n");
        return 2;
    }
    if (argc == 5 && (sscanf(argv[4], "%dx%d", &width, &height) != 2 || width < 1 || height < 1 ||
                      width > MCU_MAX_WIDTH || height > MCU_MAX_HEIGHT)) {
        fprintf(stderr, "bad size %s\n", argv[4]);
        return 2;
    }
    size_t bytes = (size_t)width * (size_t)height * 3;
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(rgb, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read a %dx%d RGB frame from %s\n", width, height, argv[1]);
        return 2;
    }
    fclose(f);
    FILE *o = fopen(argv[3], "wb");
    if (!o) return 2;
    size_t n = mcu_jpeg_encode_rows(frame_row, 0, width, height, atoi(argv[2]), to_file, o);
    fclose(o);
    printf("%zu bytes\n", n);
    return n ? 0 : 1;
}
