/* See mcu_video.h. */
#include "mcu_video.h"

#include "mcu_conv.h"

#define PACKED (((MCU_MAX_SYMBOLS + 3) / 4) * 3)      /* 4 symbols in 3 bytes: 588 at 224x224 */

typedef struct {
    uint32_t seq;
    uint8_t valid;
    uint8_t lw, lh;                    /* the latent size it was coded at */
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

/* n symbols; a last group of fewer than four is padded with zeros */
static void pack(const uint8_t *sym, int n, uint8_t *out) {
    int i = 0;
    for (; i + 4 <= n; i += 4, out += 3) {
        uint32_t v = sym[i] | (uint32_t)sym[i + 1] << 6 | (uint32_t)sym[i + 2] << 12 | (uint32_t)sym[i + 3] << 18;
        out[0] = (uint8_t)v;
        out[1] = (uint8_t)(v >> 8);
        out[2] = (uint8_t)(v >> 16);
    }
    if (i < n) {
        uint32_t v = 0;
        for (int j = 0; i + j < n; j++) v |= (uint32_t)sym[i + j] << (6 * j);
        out[0] = (uint8_t)v;
        out[1] = (uint8_t)(v >> 8);
        out[2] = (uint8_t)(v >> 16);
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
    if (!r->valid || r->lw != mcu_geo.lw || r->lh != mcu_geo.lh) return 0;      /* none, or of another size */
    uint32_t d = seq - r->seq;
    if (d < 1 || d > max_age) return 0;
    *delta = (int)d;
    return r;
}

size_t mcu_code_channel_video(uint32_t seq, int c, const uint8_t *sym, uint8_t *out, int *delta) {
    size_t len = mcu_code_channel(c, sym, out);
    int d = 0;
    *delta = 0;
    const slot_t *r = reference(seq, c, &d);
    if (r) {
        uint8_t *alt = (uint8_t *)mcu_scratch;    /* scratch (free while no convolution runs): the inter chunk */
#if MCU_HAVE_INTER
        size_t n = mcu_code_channel_inter(c, sym, r->sym, alt);
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
    if (!cand->valid || seq - cand->seq > max_age || cand->lw != mcu_geo.lw || cand->lh != mcu_geo.lh) {
        cand->seq = seq;
        cand->valid = 1;
        cand->lw = (uint8_t)mcu_geo.lw;
        cand->lh = (uint8_t)mcu_geo.lh;
        pack(sym, mcu_geo.n, cand->sym);
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
