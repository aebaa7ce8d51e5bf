/* Baseline JPEG (ITU T.81) encoder for the same camera, to measure M-JPEG on the same
 * MCU: YCbCr 4:2:0, fixed-point AAN DCT, the standard quantisation tables scaled by a
 * quality as libjpeg does, the standard Huffman tables.  Row streaming like the
 * MCUCoder encoder (16 camera rows at a time, about 7 KB of buffers), no malloc. */
#ifndef MCU_JPEG_H
#define MCU_JPEG_H
#include <stddef.h>
#include <stdint.h>

#include "mcu_codec.h"

/* Receives the JPEG file's bytes in order, a few dozen at a time. */
typedef void (*mcu_byte_sink)(void *ctx, const uint8_t *data, size_t n);

/* One width x height frame (up to MCU_MAX_WIDTH wide) from read_row -> a complete JPEG
 * file (SOI .. EOI) through sink; the last column and row are repeated up to whole 16x16
 * MCUs, as libjpeg does.  quality 1..100 as in libjpeg.  Returns the file's length, or
 * 0 when the camera failed or the size is out of range. */
size_t mcu_jpeg_encode_rows(mcu_row_reader read_row, void *row_ctx, int width, int height, int quality,
                            mcu_byte_sink sink, void *sink_ctx);
#endif
