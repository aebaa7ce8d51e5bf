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

/* One 224x224 frame from read_row -> a complete JPEG file (SOI .. EOI) through sink.
 * quality 1..100 as in libjpeg.  Returns the file's length, or 0 when the camera failed. */
size_t mcu_jpeg_encode_rows(mcu_row_reader read_row, void *row_ctx, int quality, mcu_byte_sink sink,
                            void *sink_ctx);
#endif
