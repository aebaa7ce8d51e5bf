/* Video mode on the camera (docs/bitstream.md, version 2): each channel coded against
 * the same channel of a frame the receiver acknowledged, when that is shorter than
 * its intra chunk.  The twin of mcucoder_ros/codec/inter.py (ReferenceState and
 * InterChannelCoder): same rules, same bytes.
 *
 * Per channel the camera keeps an acknowledged reference and a candidate (a sent
 * frame awaiting its acknowledgement), as 6-bit symbols packed 4 in 3 bytes: 14 KB
 * for the twelve channels at 224x224, growing with the area, held to MCU_REF_BUDGET
 * (64 KB: every channel up to about 480x480, the first 9 at 640x480).  A reference is used only
 * for a channel of its own latent size (a change of size or scale starts new ones).
 * Without acknowledgements everything stays intra. */
#ifndef MCU_VIDEO_H
#define MCU_VIDEO_H
#include <stddef.h>
#include <stdint.h>

#include "mcu_codec.h"

#define MCU_VIDEO_MAX_DELTA 255

/* defaults 30 and 60, as ReferenceState; refresh_period 0: no cyclic refresh */
void mcu_video_config(uint32_t max_age, uint32_t refresh_period);

/* One channel of frame `seq` (mcu_geo.n symbols, packed): the shorter of its intra chunk and its inter chunk
 * against the acknowledged reference (when there is one).  *delta: 0 intra, d: the
 * reference is frame seq - d.  Returns the chunk length; the channel then becomes the
 * candidate reference if its slot is free.  out is one of mcu_chunk_buffer's (the
 * inter chunk is coded in the other).  Counts in MCU_STAGE_CODE. */
size_t mcu_code_channel_video(uint32_t seq, int channel, const uint8_t *packed, uint8_t *out, int *delta);
/* How many of the most important channels keep references (the rest go intra). */
int mcu_video_reference_channels(void);

/* The receiver decoded the channels in `mask` (bit c: channel c) of frame `seq`, and no
 * others of it.  Acknowledgements come in frame order. */
void mcu_video_ack(uint32_t seq, uint16_t mask);
void mcu_video_request_refresh(void);   /* the next frame goes all intra */
void mcu_video_frame_done(void);
int mcu_video_active(void);             /* some channel has an acknowledged reference */

/* Inter coding of one channel against a reference, both packed (the rANS coder of
 * docs/bitstream.md); out 0: the length only. */
size_t mcu_code_channel_inter(int channel, const uint8_t *packed, const uint8_t *ref_packed, uint8_t *out);
#endif
