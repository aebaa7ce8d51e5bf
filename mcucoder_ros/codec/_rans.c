/* Host-side rANS coding of one latent channel, in C for speed.
 *
 * Decoding: the same model as ChannelCoder.decode in entropy.py (which stays the
 * reference and the fallback when this extension is not built): MED prediction from
 * the left, top and top-left symbols, an activity context, byte-wise rANS with a 32-bit
 * state and 12-bit probabilities.  The Python side checks the chunk length and raises
 * the errors; this returns a status code.
 * Encoding: RansTables.encode's loop (the residuals and contexts come from Python,
 * vectorised, for the intra and the inter model alike).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define NSYM 64
#define MAX_SIDE 256    /* latent side: the largest picture is 1920 pixels, 240 positions */
#define NCTX 8
#define PROB_BITS 12
#define RANS_L (1u << 23)

enum { OK = 0, TRUNCATED = 1, CORRUPTED = 2 };

/* activity -> context: the first i with a <= t[i], else the last bucket */
static int bucket_of(int a, const int t[NCTX - 1]) {
    for (int i = 0; i < NCTX - 1; i++)
        if (a <= t[i]) return i;
    return NCTX - 1;
}

/* intra: |left - topleft| + |top - topleft| (entropy.ACTIVITY_THRESHOLDS) */
static const int SPATIAL[NCTX - 1] = {0, 1, 2, 4, 7, 12, 20};
/* inter: |a - a'| + |b - b'| (inter.TEMPORAL_THRESHOLDS) */
static const int TEMPORAL[NCTX - 1] = {0, 1, 2, 3, 5, 8, 12};

static int decode(const uint8_t *chunk, Py_ssize_t n, const uint16_t *freq, const uint16_t *cum,
                  const uint8_t *slot2sym, int edge, int height, int width, uint8_t *out) {
    uint32_t x = ((uint32_t)chunk[0] << 24) | ((uint32_t)chunk[1] << 16) | ((uint32_t)chunk[2] << 8) | chunk[3];
    Py_ssize_t pos = 4;
    for (int y = 0; y < height; y++) {
        for (int xx = 0; xx < width; xx++) {
            int i = y * width + xx;
            int a = xx ? out[i - 1] : edge;
            int b = y ? out[i - width] : edge;
            int c = (y && xx) ? out[i - width - 1] : edge;
            int mn = a < b ? a : b, mx = a < b ? b : a;
            int pred = c >= mx ? mn : (c <= mn ? mx : a + b - c);
            int k = bucket_of(abs(a - c) + abs(b - c), SPATIAL);
            uint32_t slot = x & ((1u << PROB_BITS) - 1);
            int r = slot2sym[k * (1 << PROB_BITS) + slot];
            x = freq[k * NSYM + r] * (x >> PROB_BITS) + slot - cum[k * (NSYM + 1) + r];
            while (x < RANS_L) {
                if (pos >= n) return TRUNCATED;
                x = (x << 8) | chunk[pos++];
            }
            out[i] = (uint8_t)((r + pred) & (NSYM - 1));
        }
    }
    return (x == RANS_L && pos == n) ? OK : CORRUPTED;
}

/* Video mode (inter.py, InterChannelCoder.decode): residual against the reference's
 * co-located symbol, context from temporal activity. */

static int decode_inter(const uint8_t *chunk, Py_ssize_t n, const uint16_t *freq, const uint16_t *cum,
                        const uint8_t *slot2sym, int edge, int height, int width, const uint8_t *ref, uint8_t *out) {
    uint32_t x = ((uint32_t)chunk[0] << 24) | ((uint32_t)chunk[1] << 16) | ((uint32_t)chunk[2] << 8) | chunk[3];
    Py_ssize_t pos = 4;
    for (int i = 0; i < height * width; i++) {
        int xx = i % width;
        int a = xx ? out[i - 1] : edge, ar = xx ? ref[i - 1] : edge;
        int b = i >= width ? out[i - width] : edge, br = i >= width ? ref[i - width] : edge;
        int k = bucket_of(abs(a - ar) + abs(b - br), TEMPORAL);
        uint32_t slot = x & ((1u << PROB_BITS) - 1);
        int r = slot2sym[k * (1 << PROB_BITS) + slot];
        x = freq[k * NSYM + r] * (x >> PROB_BITS) + slot - cum[k * (NSYM + 1) + r];
        while (x < RANS_L) {
            if (pos >= n) return TRUNCATED;
            x = (x << 8) | chunk[pos++];
        }
        out[i] = (uint8_t)((ref[i] + r) & (NSYM - 1));
    }
    return (x == RANS_L && pos == n) ? OK : CORRUPTED;
}

/* decode_channel(chunk, freq u16[8*64], cum u16[8*65], slot2sym u8[8*4096], edge, out u8[h*w], h, w
 *                [, ref u8[h*w]]) -> status; with ref: the inter model */
static PyObject *decode_channel(PyObject *self, PyObject *args) {
    Py_buffer chunk, freq, cum, s2s, out, ref = {0};
    int edge, height, width, status = CORRUPTED;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*iw*ii|y*", &chunk, &freq, &cum, &s2s, &edge, &out, &height, &width, &ref))
        return NULL;
    if (height < 1 || width < 1 || height > MAX_SIDE || width > MAX_SIDE) {
        PyErr_SetString(PyExc_ValueError, "decode_channel: latent height and width must be 1..256");
    } else if (freq.len != NCTX * NSYM * 2 || cum.len != NCTX * (NSYM + 1) * 2 ||
               s2s.len != NCTX * (1 << PROB_BITS) || out.len != (Py_ssize_t)height * width || chunk.len < 4 ||
               (ref.buf && ref.len != (Py_ssize_t)height * width)) {
        PyErr_SetString(PyExc_ValueError, "decode_channel: wrong table or buffer size");
    } else {
        Py_BEGIN_ALLOW_THREADS
        status = ref.buf ? decode_inter(chunk.buf, chunk.len, freq.buf, cum.buf, s2s.buf, edge, height, width,
                                        ref.buf, out.buf)
                         : decode(chunk.buf, chunk.len, freq.buf, cum.buf, s2s.buf, edge, height, width, out.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&chunk), PyBuffer_Release(&freq), PyBuffer_Release(&cum);
    PyBuffer_Release(&s2s), PyBuffer_Release(&out);
    if (ref.buf) PyBuffer_Release(&ref);
    return PyErr_Occurred() ? NULL : PyLong_FromLong(status);
}

/* encode_residuals(res u8[n], ctx u8[n], freq u16[8*64], cum u16[8*65]) -> chunk bytes:
 * the final state (big endian), then the renormalisation bytes, as RansTables.encode */
static PyObject *encode_residuals(PyObject *self, PyObject *args) {
    Py_buffer res, ctx, freq_b, cum_b;
    PyObject *chunk = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &res, &ctx, &freq_b, &cum_b))
        return NULL;
    Py_ssize_t n = res.len;
    if (ctx.len != n || freq_b.len != NCTX * NSYM * 2 || cum_b.len != NCTX * (NSYM + 1) * 2) {
        PyErr_SetString(PyExc_ValueError, "encode_residuals: wrong table or buffer size");
        goto done;
    }
    const uint8_t *r = res.buf, *k = ctx.buf;
    const uint16_t *freq = freq_b.buf, *cum = cum_b.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (r[i] >= NSYM || k[i] >= NCTX) {
            PyErr_SetString(PyExc_ValueError, "encode_residuals: residual >= 64 or context >= 8");
            goto done;
        }
    /* at most 12 bits a symbol (every frequency >= 1 of 4096) plus the 4-byte state */
    Py_ssize_t cap = 4 + (n * PROB_BITS + 7) / 8 + 4;
    uint8_t *buf = PyMem_Malloc((size_t)cap), *p = buf + cap;
    if (!buf) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t x = RANS_L;
    const uint32_t xmax_base = (RANS_L >> PROB_BITS) << 8;
    for (Py_ssize_t i = n - 1; i >= 0; i--) {        /* rANS codes backwards */
        uint32_t f = freq[k[i] * NSYM + r[i]];
        while (x >= xmax_base * f) {
            *--p = (uint8_t)x;
            x >>= 8;
        }
        x = ((x / f) << PROB_BITS) + (x % f) + cum[k[i] * (NSYM + 1) + r[i]];
    }
    for (int b = 0; b < 4; b++) {
        *--p = (uint8_t)x;
        x >>= 8;
    }
    chunk = PyBytes_FromStringAndSize((const char *)p, buf + cap - p);
    PyMem_Free(buf);
done:
    PyBuffer_Release(&res), PyBuffer_Release(&ctx), PyBuffer_Release(&freq_b), PyBuffer_Release(&cum_b);
    return chunk;
}

static PyMethodDef methods[] = {
    {"encode_residuals", encode_residuals, METH_VARARGS, "rANS-encode one channel's residuals and contexts"},
    {"decode_channel", decode_channel, METH_VARARGS, "rANS-decode one channel of h x w symbols; returns 0 ok, 1 truncated, 2 corrupted"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "rANS channel coder (C)", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
