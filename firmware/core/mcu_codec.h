/* MCUCoder camera-side codec: INT8 encoder, 6-bit quantiser, rANS channel coder and
 * bitstream framing (docs/bitstream.md).  Portable C99, no registers, no malloc:
 * every buffer is static and sized at compile time for the largest camera picture
 * (MCU_MAX_WIDTH x MCU_MAX_HEIGHT); the picture's size is set at run time
 * (mcu_set_geometry), from the camera's configuration.  Must match the Python
 * reference (mcucoder_ros/codec) bit for bit; test/vectors/ proves it. */
#ifndef MCU_CODEC_H
#define MCU_CODEC_H
#include <stddef.h>
#include <stdint.h>

/* The largest camera picture this build takes (settable at build time: -DMCU_MAX_WIDTH=320
 * -DMCU_MAX_HEIGHT=240).  RAM grows with the width (row rings) and with the area (the
 * latent, video mode's references). */
#ifndef MCU_MAX_WIDTH
#define MCU_MAX_WIDTH 640
#endif
#ifndef MCU_MAX_HEIGHT
#define MCU_MAX_HEIGHT 480
#endif
#if MCU_MAX_WIDTH < 8 || MCU_MAX_HEIGHT < 8 || MCU_MAX_WIDTH > 1920 || MCU_MAX_HEIGHT > 1920
#error "MCU_MAX_WIDTH and MCU_MAX_HEIGHT must be 8..1920"
#endif

#define MCU_IMAGE_SIZE 224            /* the paper's size: bitstream v1 / v2 frames */
#define MCU_CHANNELS 12
#define MCU_STRIDE 8                  /* pixels per latent position, each axis */
#define MCU_MAX_LW ((MCU_MAX_WIDTH + 7) / 8)
#define MCU_MAX_LH ((MCU_MAX_HEIGHT + 7) / 8)
#define MCU_MAX_SYMBOLS (MCU_MAX_LW * MCU_MAX_LH)
/* 4 + ceil(n * 12 / 8) + 4: the rANS worst case of a channel of n symbols (1184 at 224x224) */
#define MCU_CHUNK_BOUND(n) (8 + ((n) * 12 + 7) / 8)
#define MCU_MAX_CHUNK MCU_CHUNK_BOUND(MCU_MAX_SYMBOLS)
#define MCU_HEADER_BYTES 16           /* versions 1 and 2 */
#define MCU_HEADER_BYTES_V3 18        /* versions 3 and 4: the picture's size */
#define MCU_MAX_FRAME (MCU_HEADER_BYTES_V3 + MCU_CHANNELS * (4 + MCU_MAX_CHUNK))
/* 6-bit symbols packed 4 in 3 bytes (little-endian, symbol j of a group at bits 6j): one
 * channel of n symbols; a last group of fewer than four is padded */
#define MCU_PACKED_BYTES(n) ((((n) + 3) / 4) * 3)
#define MCU_MAX_PACKED MCU_PACKED_BYTES(MCU_MAX_SYMBOLS)
#define MCU_MAX_SHIFT 2               /* scales 1, 1/2, 1/4 of the camera's picture */

uint32_t mcu_model_id(void);

/* The picture being coded: the camera's size, the scale (shift s: 1 / 2^s, by box
 * decimation), the coded size ceil(W / 2^s) x ceil(H / 2^s), that padded to multiples
 * of 8, and the latent grid. */
typedef struct {
    int width, height;          /* the camera's picture */
    int shift;                  /* 0, 1, 2 */
    int cw, ch;                 /* coded picture (after decimation) */
    int pw, ph;                 /* coded picture padded to multiples of 8 (edge replication) */
    int lw, lh, n;              /* latent width, height, symbols per channel */
} mcu_geometry_t;
extern mcu_geometry_t mcu_geo;

enum { MCU_OK = 0, MCU_ERR_SIZE = -1, MCU_ERR_SHIFT = -2 };
/* Sets the picture for the frames that follow: MCU_OK, or MCU_ERR_SIZE when a side is
 * under 8 pixels or above the compiled maximum, MCU_ERR_SHIFT for a shift outside
 * 0..2.  A change of size clears the row rings (their padding moves). */
int mcu_set_geometry(int width, int height, int shift);

/* Bitstream version of the current geometry: 1 (224x224, intra), 3 (any other size), 4
 * (scaled); the caller turns 1 into 2 when chunks may be inter. */
int mcu_bitstream_version(void);

/* The camera, row by row: writes camera row y (0..height-1, asked for in order, each
 * once) of the current frame, width RGB pixels (3 bytes each), to dst; returns 0, or
 * non-zero when the camera failed.  A DMA line ring fits this shape: wait for row y,
 * copy it out (or point the DMA at dst), release the line. */
typedef int (*mcu_row_reader)(void *ctx, int y, uint8_t *dst);

/* Row-streaming encoder: the three convolutions run on small row rings as camera rows
 * arrive (no frame buffer; scaled frames are decimated as the rows stream in).  The
 * latent is kept whole because its channels are sent in importance order, as 6-bit
 * symbols: each latent row is quantised as conv3 makes it and packed (MCU_PACKED_BYTES
 * per channel, channel after channel, row-major; 3/4 of the int8 latent's RAM).
 * Returns 0, or the camera's error. */
int mcu_encode_symbols_rows(mcu_row_reader read_row, void *ctx, uint8_t *packed);
/* The same, keeping the int8 latent (12 channels of mcu_geo.n, channel after channel):
 * the golden vectors' check of the convolutions. */
int mcu_encode_latent_rows(mcu_row_reader read_row, void *ctx, int8_t *latent);
/* Symbol i of a packed channel. */
static inline int mcu_packed_get(const uint8_t *packed, int i) {
    const uint8_t *q = packed + 3 * (i >> 2);
    return (int)(((q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16) >> (6 * (i & 3))) & 63);
}

/* The same from a whole uint8 RGB camera picture in memory (row-major HWC). */
void mcu_encode_latent(const uint8_t *rgb, int8_t *latent);

/* Optional profiling: a free-running clock (the port's timer); the encoder then adds
 * each stage's ticks to mcu_stage_ticks.  Camera-row waits count in MCU_STAGE_CAMERA. */
enum { MCU_STAGE_CAMERA, MCU_STAGE_CONV1, MCU_STAGE_CONV2, MCU_STAGE_CONV3, MCU_STAGE_CODE, MCU_STAGES };
void mcu_set_clock(uint32_t (*clock)(void));
extern uint32_t mcu_stage_ticks[MCU_STAGES];

/* int8 latent -> 6-bit symbols, the first `channels` channels (sym may alias latent). */
void mcu_quantize(const int8_t *latent, int channels, uint8_t *sym);

/* Two buffers (which: 0, 1) of MCU_MAX_CHUNK bytes for chunks, valid from the end of one
 * frame's encoding to the start of the next (they share the convolutions' memory). */
uint8_t *mcu_chunk_buffer(int which);

/* One channel's mcu_geo.n symbols, packed -> its chunk; returns the chunk length
 * (<= MCU_CHUNK_BOUND(n)).  out 0: only the length.  Time spent here and in quantising
 * counts in MCU_STAGE_CODE. */
size_t mcu_code_channel(int channel, const uint8_t *packed, uint8_t *out);

/* Whole intra frame of the current geometry: header, chunk table and the chunks of
 * channels 0..channels-1 (version 1 at 224x224, else 3, or 4 when scaled).  Returns the
 * frame length (<= MCU_MAX_FRAME). */
size_t mcu_encode_frame(const uint8_t *rgb, int channels, uint32_t sequence, uint8_t *out);

#endif
