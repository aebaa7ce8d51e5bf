/* MCUCoder camera-side codec: INT8 encoder, 6-bit quantiser, rANS channel coder and
 * bitstream v1 framing (docs/bitstream.md).  Portable C99, no registers, no malloc:
 * every buffer is static and sized at compile time.  Must match the Python reference
 * (mcucoder_ros/codec) bit for bit; test/vectors/ proves it. */
#ifndef MCU_CODEC_H
#define MCU_CODEC_H
#include <stddef.h>
#include <stdint.h>

#define MCU_IMAGE_SIZE 224
#define MCU_CHANNELS 12
#define MCU_LATENT 28
#define MCU_SYMBOLS_PER_CHANNEL (MCU_LATENT * MCU_LATENT)
#define MCU_MAX_CHUNK 1184            /* 4 + ceil(784 * 12 / 8) + 4: rANS worst case */
#define MCU_HEADER_BYTES 16
#define MCU_MAX_FRAME (MCU_HEADER_BYTES + MCU_CHANNELS * (3 + MCU_MAX_CHUNK))

uint32_t mcu_model_id(void);

/* The camera, row by row: writes row y (0..223, asked for in order, each once) of the
 * current frame, 224 RGB pixels (672 bytes, 8 bits per channel), to dst; returns 0, or
 * non-zero when the camera failed.  A DMA line ring fits this shape: wait for row y,
 * copy it out (or point the DMA at dst), release the line. */
typedef int (*mcu_row_reader)(void *ctx, int y, uint8_t *dst);

/* Row-streaming encoder: the three convolutions run on small row rings as camera rows
 * arrive (about 16 KB in all, no frame buffer); the latent is kept whole because its
 * channels are sent in importance order.  Returns 0, or the camera's error. */
int mcu_encode_latent_rows(mcu_row_reader read_row, void *ctx,
                           int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]);

/* The same from a whole uint8 RGB frame in memory (row-major HWC, 224x224x3). */
void mcu_encode_latent(const uint8_t *rgb, int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]);

/* Optional profiling: a free-running clock (the port's timer); the encoder then adds
 * each stage's ticks to mcu_stage_ticks.  Camera-row waits count in MCU_STAGE_CAMERA. */
enum { MCU_STAGE_CAMERA, MCU_STAGE_CONV1, MCU_STAGE_CONV2, MCU_STAGE_CONV3, MCU_STAGE_CODE, MCU_STAGES };
void mcu_set_clock(uint32_t (*clock)(void));
extern uint32_t mcu_stage_ticks[MCU_STAGES];

/* int8 latent -> 6-bit symbols, the first `channels` channels (sym may alias latent). */
void mcu_quantize(const int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT], int channels,
                  uint8_t sym[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]);

/* One channel's symbols -> its chunk; returns the chunk length (<= MCU_MAX_CHUNK).
 * Time spent here and in mcu_quantize counts in MCU_STAGE_CODE. */
size_t mcu_code_channel(int channel, const uint8_t sym[MCU_LATENT][MCU_LATENT], uint8_t *out);

/* Whole frame: header, chunk table and the chunks of channels 0..channels-1.
 * Returns the frame length (<= MCU_MAX_FRAME). */
size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out);

#endif
