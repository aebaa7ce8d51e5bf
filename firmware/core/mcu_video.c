/* See mcu_video.h. */
#include "mcu_video.h"

#include "mcu_conv.h"

/* out: one of mcu_chunk_buffer's; the inter chunk goes to the other */

/* References take at most MCU_REF_BUDGET bytes: two per channel (acknowledged and
 * candidate), for as many of the most important channels as fit; at 640x480 the
 * budget holds 9 of 12, and the channels past them always go intra.  The host's twin
 * is ReferenceState(reference_channels=...). */
#ifndef MCU_REF_BUDGET
#define MCU_REF_BUDGET 65536
#endif
#define REF_FIT (MCU_REF_BUDGET / (2 * (MCU_MAX_PACKED + 8)))
#define REF_CHANNELS (REF_FIT < MCU_CHANNELS ? REF_FIT : MCU_CHANNELS)

typedef struct {
    uint32_t seq;
    uint8_t valid;
    uint8_t lw, lh;                    /* the latent size it was coded at */
    uint8_t sym[MCU_MAX_PACKED];
} slot_t;

static slot_t slots[REF_CHANNELS][2];     /* per channel: the acknowledged one and the candidate */
static uint8_t acked_slot[REF_CHANNELS];  /* which of the two is the acknowledged reference */
static uint32_t max_age = 30, refresh_period = 60;
static int refresh_all;

int mcu_video_reference_channels(void) { return REF_CHANNELS; }

void mcu_video_config(uint32_t age, uint32_t period) {
    max_age = age < 1 ? 1 : (age > MCU_VIDEO_MAX_DELTA ? MCU_VIDEO_MAX_DELTA : age);
    refresh_period = period;
}

int mcu_video_active(void) {
    for (int c = 0; c < REF_CHANNELS; c++)
        if (slots[c][acked_slot[c]].valid) return 1;
    return 0;
}

/* the acknowledged reference to predict channel c of frame seq from, or 0: intra */
static const slot_t *reference(uint32_t seq, int c, int *delta) {
    if (!MCU_HAVE_INTER || refresh_all || c >= REF_CHANNELS) return 0;   /* no inter tables: intra only */
    if (refresh_period && (seq + (uint32_t)c * refresh_period / MCU_CHANNELS) % refresh_period == 0) return 0;
    const slot_t *r = &slots[c][acked_slot[c]];
    if (!r->valid || r->lw != mcu_geo.lw || r->lh != mcu_geo.lh) return 0;      /* none, or of another size */
    uint32_t d = seq - r->seq;
    if (d < 1 || d > max_age) return 0;
    *delta = (int)d;
    return r;
}

size_t mcu_code_channel_video(uint32_t seq, int c, const uint8_t *packed, uint8_t *out, int *delta) {
    size_t len = mcu_code_channel(c, packed, out);
    int d = 0;
    *delta = 0;
    const slot_t *r = reference(seq, c, &d);
#if MCU_HAVE_INTER
    if (r) {        /* the inter chunk in the second buffer; kept where it is shorter */
        uint8_t *alt = mcu_chunk_buffer(out == mcu_chunk_buffer(1) ? 0 : 1);
        size_t n = mcu_code_channel_inter(c, packed, r->sym, alt);
        if (n < len) {
            for (size_t i = 0; i < n; i++) out[i] = alt[i];
            len = n;
            *delta = d;
        }
    }
#else
    (void)r;
#endif
    if (c >= REF_CHANNELS) return len;
    slot_t *cand = &slots[c][1 - acked_slot[c]];
    if (!cand->valid || seq - cand->seq > max_age || cand->lw != mcu_geo.lw || cand->lh != mcu_geo.lh) {
        cand->seq = seq;
        cand->valid = 1;
        cand->lw = (uint8_t)mcu_geo.lw;
        cand->lh = (uint8_t)mcu_geo.lh;
        const int bytes = MCU_PACKED_BYTES(mcu_geo.n);
        for (int i = 0; i < bytes; i++) cand->sym[i] = packed[i];
    }
    return len;
}

void mcu_video_ack(uint32_t seq, uint16_t mask) {
    for (int c = 0; c < REF_CHANNELS; c++) {
        slot_t *cand = &slots[c][1 - acked_slot[c]];
        if (!cand->valid) continue;
        uint32_t age = seq - cand->seq;
        if (age == 0 && (mask >> c) & 1) {
            acked_slot[c] = (uint8_t)(1 - acked_slot[c]);          /* promote: the old reference slot is free */
            slots[c][1 - acked_slot[c]].valid = 0;
        } else if (age < 0x80000000u) {
            cand->valid = 0;          /* this frame or a later one came back without the channel: lost */
        }
    }
}

void mcu_video_request_refresh(void) { refresh_all = 1; }
void mcu_video_frame_done(void) { refresh_all = 0; }
