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

/* uint8 RGB frame, row-major HWC, 224x224x3 -> int8 latent [12][28][28]. */
void mcu_encode_latent(const uint8_t *rgb, int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]);

/* int8 latent -> 6-bit symbols, the first `channels` channels. */
void mcu_quantize(const int8_t latent[MCU_CHANNELS][MCU_LATENT][MCU_LATENT], int channels,
                  uint8_t sym[MCU_CHANNELS][MCU_LATENT][MCU_LATENT]);

/* One channel's symbols -> its chunk; returns the chunk length (<= MCU_MAX_CHUNK). */
size_t mcu_code_channel(int channel, const uint8_t sym[MCU_LATENT][MCU_LATENT], uint8_t *out);

/* Whole frame: header, chunk table and the chunks of channels 0..channels-1.
 * Returns the frame length (<= MCU_MAX_FRAME). */
size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out);

#endif
