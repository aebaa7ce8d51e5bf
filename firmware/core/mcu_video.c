/* See mcu_video.h. */
#include "mcu_video.h"

#include "mcu_conv.h"

#define PACKED ((MCU_SYMBOLS_PER_CHANNEL / 4) * 3)      /* 588 bytes: 4 symbols in 3 */

typedef struct {
    uint32_t seq;
    uint8_t valid;
    uint8_t sym[PACKED];
} slot_t;

static slot_t slots[MCU_CHANNELS][2];     /* per channel: the acknowledged one and the candidate */
static uint8_t acked_slot[MCU_CHANNELS];  /* which of the two is the acknowledged reference */
static uint32_t max_age = 30, refresh_period = 60;
static int refresh_all;

void mcu_video_config(uint32_t age, uint32_t period) {
    max_age = age < 1 ? 1 : (age > MCU_VIDEO_MAX_DELTA ? MCU_VIDEO_MAX_DELTA : age);
    refresh_period = period;
}

static void pack(const uint8_t *sym, uint8_t *out) {
    for (int i = 0; i < MCU_SYMBOLS_PER_CHANNEL; i += 4, out += 3) {
        uint32_t v = sym[i] | (uint32_t)sym[i + 1] << 6 | (uint32_t)sym[i + 2] << 12 | (uint32_t)sym[i + 3] << 18;
        out[0] = (uint8_t)v;
        out[1] = (uint8_t)(v >> 8);
        out[2] = (uint8_t)(v >> 16);
    }
}

static void unpack(const uint8_t *in, uint8_t *sym) {
    for (int i = 0; i < MCU_SYMBOLS_PER_CHANNEL; i += 4, in += 3) {
        uint32_t v = in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16;
        sym[i] = v & 63;
        sym[i + 1] = (v >> 6) & 63;
        sym[i + 2] = (v >> 12) & 63;
        sym[i + 3] = (v >> 18) & 63;
    }
}

int mcu_video_active(void) {
    for (int c = 0; c < MCU_CHANNELS; c++)
        if (slots[c][acked_slot[c]].valid) return 1;
    return 0;
}

/* the acknowledged reference to predict channel c of frame seq from, or 0: intra */
static const slot_t *reference(uint32_t seq, int c, int *delta) {
    if (!MCU_HAVE_INTER || refresh_all) return 0;       /* a model without inter tables: intra only */
    if (refresh_period && (seq + (uint32_t)c * refresh_period / MCU_CHANNELS) % refresh_period == 0) return 0;
    const slot_t *r = &slots[c][acked_slot[c]];
    if (!r->valid) return 0;
    uint32_t d = seq - r->seq;
    if (d < 1 || d > max_age) return 0;
    *delta = (int)d;
    return r;
}

size_t mcu_code_channel_video(uint32_t seq, int c, const uint8_t sym[MCU_LATENT][MCU_LATENT], uint8_t *out,
                              int *delta) {
    size_t len = mcu_code_channel(c, sym, out);
    int d = 0;
    *delta = 0;
    const slot_t *r = reference(seq, c, &d);
    if (r) {
        /* scratch (free while no convolution runs): the unpacked reference, then the chunk */
        uint8_t *ref = (uint8_t *)mcu_scratch, *alt = ref + MCU_SYMBOLS_PER_CHANNEL;
        unpack(r->sym, ref);
#if MCU_HAVE_INTER
        size_t n = mcu_code_channel_inter(c, sym, (const uint8_t (*)[MCU_LATENT])ref, alt);
#else
        size_t n = len;
#endif
        if (n < len) {
            for (size_t i = 0; i < n; i++) out[i] = alt[i];
            len = n;
            *delta = d;
        }
    }
    slot_t *cand = &slots[c][1 - acked_slot[c]];
    if (!cand->valid || seq - cand->seq > max_age) {
        cand->seq = seq;
        cand->valid = 1;
        pack(&sym[0][0], cand->sym);
    }
    return len;
}

void mcu_video_ack(uint32_t seq, uint16_t mask) {
    for (int c = 0; c < MCU_CHANNELS; c++) {
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
