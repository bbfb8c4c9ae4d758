/*
 * Interleaved SHA-256 with the x86 SHA extensions: two independent streams per call.
 *
 * One SHA-256 stream is a chain of dependent SHA256RNDS2 instructions, so a single
 * stream runs at the instruction's latency (about 1.8 GB/s here, which is what
 * OpenSSL reaches). Two independent streams interleaved instruction by instruction
 * fill the gaps: 2.6 GB/s in all on the reference machine. The data plane always has
 * two streams to hash side by side (the plaintext and the ciphertext of a segment,
 * or two segments' digests), so this module hashes exactly that: `update2` advances
 * two running hashers in one call and `sha256_pair` digests two buffers.
 *
 * `merkle_root` hashes a Merkle tree's leaves, then its nodes, two at a time
 * (`sharechain.crypto.merkle`: a block's transaction and results roots).
 *
 * `hmac_sum` uses the same two-stream interleaving for the store seal's state digest
 * (`sharechain.ledger.seal`): a sum mod 2^256 of HMAC-SHA256 over many short rows, read
 * straight from an iterator (a SQLite cursor), two rows at a time.
 *
 * The results are plain SHA-256 (FIPS 180-4), checked against hashlib by the tests.
 * The GIL is released while hashing (not by `hmac_sum`, which reads Python rows
 * between its hashes). `ACCELERATED` is false where the CPU lacks the
 * extensions (or this is not x86-64); callers then use hashlib instead, and the
 * functions here refuse to run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHAX_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SHAX_X86 0
#endif

#include "_sha256_tables.h"

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t buflen;  /* bytes waiting in buf, always < 64 */
    uint64_t total; /* bytes hashed so far, for the length in the padding */
} shax_state;

static int accelerated = 0;

#if SHAX_X86

#define SHAX_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* The SHA instructions keep the state as (A,B,E,F) and (C,D,G,H). */
SHAX_TARGET static inline void load_state(const uint32_t h[8], __m128i *abef, __m128i *cdgh) {
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
    *abef = _mm_alignr_epi8(dcba, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, dcba, 0xF0);
}

SHAX_TARGET static inline void store_state(uint32_t h[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* Message words 4g..4g+3 from the previous sixteen (FIPS 180-4, 6.2.2 step 1). */
#define SCHEDULE(W, g)                                                                        \
    _mm_sha256msg2_epu32(                                                                     \
        _mm_add_epi32(_mm_sha256msg1_epu32(W[(g) - 4], W[(g) - 3]),                           \
                      _mm_alignr_epi8(W[(g) - 1], W[(g) - 2], 4)),                            \
        W[(g) - 1])

SHAX_TARGET static void compress1(uint32_t h[8], const uint8_t *p, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i s0, s1;
    load_state(h, &s0, &s1);
    for (; blocks; blocks--, p += 64) {
        __m128i save0 = s0, save1 = s1, W[16], m;
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            W[g] = g < 4 ? _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), swap)
                         : SCHEDULE(W, g);
            m = _mm_add_epi32(W[g], _mm_load_si128((const __m128i *)&SHA256_K[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }
    store_state(h, s0, s1);
}

/* Two independent streams of the same number of blocks, interleaved round by round. */
SHAX_TARGET static void compress2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8],
                                  const uint8_t *pb, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a0, a1, b0, b1;
    load_state(ha, &a0, &a1);
    load_state(hb, &b0, &b1);
    for (; blocks; blocks--, pa += 64, pb += 64) {
        __m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1, A[16], B[16], ma, mb, k;
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            if (g < 4) {
                A[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * g)), swap);
                B[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * g)), swap);
            } else {
                A[g] = SCHEDULE(A, g);
                B[g] = SCHEDULE(B, g);
            }
            k = _mm_load_si128((const __m128i *)&SHA256_K[4 * g]);
            ma = _mm_add_epi32(A[g], k);
            mb = _mm_add_epi32(B[g], k);
            a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
            b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
            a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ma, 0x0E));
            b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(mb, 0x0E));
        }
        a0 = _mm_add_epi32(a0, sa0);
        a1 = _mm_add_epi32(a1, sa1);
        b0 = _mm_add_epi32(b0, sb0);
        b1 = _mm_add_epi32(b1, sb1);
    }
    store_state(ha, a0, a1);
    store_state(hb, b0, b1);
}

static int cpu_has_sha(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & bit_SHA) != 0;
}
#else
static void compress1(uint32_t h[8], const uint8_t *p, size_t blocks) {
    (void)h, (void)p, (void)blocks;
}
static void compress2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb,
                      size_t blocks) {
    (void)ha, (void)pa, (void)hb, (void)pb, (void)blocks;
}
static int cpu_has_sha(void) { return 0; }
#endif

static void state_init(shax_state *s) {
    memcpy(s->h, SHA256_IV, sizeof SHA256_IV);
    s->buflen = 0;
    s->total = 0;
}

/* Complete a partial block from the front of `*p`; afterwards buf is empty or `*n` is 0. */
static void state_fill(shax_state *s, const uint8_t **p, size_t *n) {
    if (!s->buflen)
        return;
    size_t take = 64 - s->buflen < *n ? 64 - s->buflen : *n;
    memcpy(s->buf + s->buflen, *p, take);
    s->buflen += take;
    s->total += take;
    *p += take;
    *n -= take;
    if (s->buflen == 64) {
        compress1(s->h, s->buf, 1);
        s->buflen = 0;
    }
}

/* Keep the tail (< 64 bytes) of an input whose whole blocks were hashed. */
static void state_keep(shax_state *s, const uint8_t *p, size_t n) {
    memcpy(s->buf, p, n);
    s->buflen = n;
    s->total += n;
}

static void state_update1(shax_state *s, const uint8_t *p, size_t n) {
    state_fill(s, &p, &n);
    if (s->buflen) /* the input ended inside the partial block */
        return;
    size_t blocks = n / 64;
    compress1(s->h, p, blocks);
    s->total += blocks * 64;
    state_keep(s, p + blocks * 64, n - blocks * 64);
}

static void state_update2(shax_state *a, const uint8_t *pa, size_t na, shax_state *b,
                          const uint8_t *pb, size_t nb) {
    state_fill(a, &pa, &na);
    state_fill(b, &pb, &nb);
    size_t common = (na < nb ? na : nb) / 64;
    compress2(a->h, pa, b->h, pb, common);
    a->total += common * 64;
    b->total += common * 64;
    state_update1(a, pa + common * 64, na - common * 64);
    state_update1(b, pb + common * 64, nb - common * 64);
}

static void state_digest(const shax_state *s, uint8_t out[32]) {
    shax_state t = *s;
    uint64_t bits = t.total * 8;
    uint8_t pad[128] = {0x80};
    size_t padlen = (t.buflen < 56 ? 56 : 120) - t.buflen;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    state_update1(&t, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(t.h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(t.h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(t.h[i] >> 8);
        out[4 * i + 3] = (uint8_t)t.h[i];
    }
}

/* --- the Sha256 type ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    shax_state state;
    int busy; /* set while a call hashes without the GIL */
} Sha256Object;

static PyTypeObject Sha256Type;

/* Inputs below this are hashed without releasing the GIL (as hashlib does). */
#define GIL_MINSIZE 2048

static int require_accelerated(void) {
    if (!accelerated) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this CPU has no SHA extensions: use hashlib (check ACCELERATED first)");
        return -1;
    }
    return 0;
}

static int claim(Sha256Object *h) {
    if (h->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a Sha256 object was used by two threads at once: give each thread its own");
        return -1;
    }
    h->busy = 1;
    return 0;
}

/* No object exists on a CPU without the instructions, so no method can reach them. */
static PyObject *Sha256_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (require_accelerated() < 0)
        return NULL;
    Sha256Object *self = (Sha256Object *)PyType_GenericNew(type, args, kwds);
    if (self) {
        state_init(&self->state);
        self->busy = 0;
    }
    return (PyObject *)self;
}

static int Sha256_init(Sha256Object *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", NULL};
    Py_buffer data = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|y*:Sha256", kwlist, &data))
        return -1;
    if (claim(self) < 0) {
        PyBuffer_Release(&data);
        return -1;
    }
    state_init(&self->state);
    if (data.buf)
        state_update1(&self->state, data.buf, (size_t)data.len);
    self->busy = 0;
    PyBuffer_Release(&data);
    return 0;
}

static PyObject *Sha256_update(Sha256Object *self, PyObject *arg) {
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (claim(self) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (data.len >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        state_update1(&self->state, data.buf, (size_t)data.len);
        Py_END_ALLOW_THREADS
    } else {
        state_update1(&self->state, data.buf, (size_t)data.len);
    }
    self->busy = 0;
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *Sha256_digest(Sha256Object *self, PyObject *Py_UNUSED(ignored)) {
    uint8_t out[32];
    if (claim(self) < 0)
        return NULL;
    state_digest(&self->state, out);
    self->busy = 0;
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static PyObject *Sha256_copy(Sha256Object *self, PyObject *Py_UNUSED(ignored)) {
    /* Claimed like the other methods: a state copied while another thread's update runs
     * without the GIL would be half of each. */
    if (claim(self) < 0)
        return NULL;
    Sha256Object *copy = PyObject_New(Sha256Object, &Sha256Type);
    if (copy) {
        copy->state = self->state;
        copy->busy = 0;
    }
    self->busy = 0;
    return (PyObject *)copy;
}

static PyMethodDef Sha256_methods[] = {
    {"update", (PyCFunction)Sha256_update, METH_O, "Hash more bytes."},
    {"digest", (PyCFunction)Sha256_digest, METH_NOARGS,
     "The SHA-256 of everything hashed so far (the object can go on)."},
    {"copy", (PyCFunction)Sha256_copy, METH_NOARGS, "An independent copy of this hasher."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject Sha256Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sharechain.crypto._sha256x.Sha256",
    .tp_doc = "A running SHA-256, like hashlib.sha256, that update2 can advance in pairs.",
    .tp_basicsize = sizeof(Sha256Object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Sha256_new,
    .tp_init = (initproc)Sha256_init,
    .tp_methods = Sha256_methods,
};

/* --- module functions ------------------------------------------------------------------ */

static PyObject *shax_update2(PyObject *Py_UNUSED(module), PyObject *args) {
    Sha256Object *a, *b;
    Py_buffer da, db;
    if (!PyArg_ParseTuple(args, "O!y*O!y*:update2", &Sha256Type, &a, &da, &Sha256Type, &b, &db))
        return NULL;
    PyObject *result = NULL;
    if (a == b) {
        PyErr_SetString(PyExc_ValueError, "update2 needs two different hashers");
        goto done;
    }
    if (claim(a) < 0)
        goto done;
    if (claim(b) < 0) {
        a->busy = 0;
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    state_update2(&a->state, da.buf, (size_t)da.len, &b->state, db.buf, (size_t)db.len);
    Py_END_ALLOW_THREADS
    a->busy = 0;
    b->busy = 0;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&da);
    PyBuffer_Release(&db);
    return result;
}

static PyObject *shax_sha256_pair(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer x, y;
    if (!PyArg_ParseTuple(args, "y*y*:sha256_pair", &x, &y))
        return NULL;
    PyObject *result = NULL;
    if (require_accelerated() == 0) {
        shax_state sx, sy;
        uint8_t dx[32], dy[32];
        state_init(&sx);
        state_init(&sy);
        Py_BEGIN_ALLOW_THREADS
        state_update2(&sx, x.buf, (size_t)x.len, &sy, y.buf, (size_t)y.len);
        state_digest(&sx, dx);
        state_digest(&sy, dy);
        Py_END_ALLOW_THREADS
        result = Py_BuildValue("(y#y#)", dx, (Py_ssize_t)32, dy, (Py_ssize_t)32);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return result;
}

/* --- keyed sums: the store seal's state digest ------------------------------------------ */

/* Each row's MAC is HMAC-SHA256 (RFC 2104) from the two keyed states, `inner` after
 * key ^ ipad and `outer` after key ^ opad (one block each): a row costs the blocks of
 * its padded message and one outer block. Rows are hashed two at a time, interleaved
 * (compress2) over the blocks they have in common: the same gain as `update2`. */

typedef struct {
    uint8_t *p;
    size_t cap;
} row_buf;

/* acc += the 32 bytes of d read as a little-endian integer, mod 2^256. */
static void add256(uint64_t acc[4], const uint8_t d[32]) {
    unsigned carry = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t limb = 0, sum;
        for (int j = 7; j >= 0; j--)
            limb = (limb << 8) | d[8 * i + j];
        sum = acc[i] + limb;
        unsigned c1 = sum < limb;
        acc[i] = sum + carry;
        carry = c1 | (acc[i] < sum);
    }
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* The bytes of a row's key: a bytes-like object, or a str as UTF-8. */
static int key_bytes(PyObject *obj, Py_buffer *view, const char **p, Py_ssize_t *n) {
    view->obj = NULL;
    if (PyUnicode_Check(obj)) {
        *p = PyUnicode_AsUTF8AndSize(obj, n);
        return *p ? 0 : -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    *p = view->buf;
    *n = view->len;
    return 0;
}

/* Write a row's inner message, prefix || u32be(len(key)) || key || value, into `b`
 * with SHA-256's padding (counting the keyed block before it); its number of blocks,
 * or 0 with an exception set on a bad row. */
static size_t pad_row(row_buf *b, const Py_buffer *prefix, PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 2) {
        PyErr_SetString(PyExc_TypeError, "hmac_sum: each row must be a (key, value) tuple");
        return 0;
    }
    Py_buffer kview, vview;
    const char *key;
    Py_ssize_t klen;
    size_t blocks = 0;
    if (key_bytes(PyTuple_GET_ITEM(row, 0), &kview, &key, &klen) < 0)
        return 0;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(row, 1), &vview, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&kview);
        return 0;
    }
    size_t n = (size_t)prefix->len + 4 + (size_t)klen + (size_t)vview.len;
    if ((uint64_t)klen > 0xFFFFFFFFu) {
        PyErr_SetString(PyExc_OverflowError, "hmac_sum: a key longer than 2^32 - 1 bytes");
        goto done;
    }
    blocks = (n + 9 + 63) / 64;
    if (blocks * 64 > b->cap) {
        uint8_t *p = PyMem_Realloc(b->p, blocks * 64);
        if (!p) {
            PyErr_NoMemory();
            blocks = 0;
            goto done;
        }
        b->p = p;
        b->cap = blocks * 64;
    }
    uint8_t *p = b->p;
    memcpy(p, prefix->buf, (size_t)prefix->len);
    p += prefix->len;
    put_be32(p, (uint32_t)klen);
    memcpy(p + 4, key, (size_t)klen);
    memcpy(p + 4 + klen, vview.buf, (size_t)vview.len);
    memset(b->p + n, 0, blocks * 64 - n);
    b->p[n] = 0x80;
    uint64_t bits = ((uint64_t)n + 64) * 8;
    put_be32(b->p + blocks * 64 - 8, (uint32_t)(bits >> 32));
    put_be32(b->p + blocks * 64 - 4, (uint32_t)bits);
done:
    PyBuffer_Release(&vview);
    PyBuffer_Release(&kview);
    return blocks;
}

/* The outer block of a MAC whose inner hash is `h`: the digest, then the padding. */
static void outer_block(const uint32_t h[8], uint8_t block[64]) {
    memset(block, 0, 64);
    for (int i = 0; i < 8; i++)
        put_be32(block + 4 * i, h[i]);
    block[32] = 0x80;
    block[62] = 0x03; /* (64 + 32) * 8 = 768 bits */
}

static void mac_bytes(const uint32_t h[8], uint8_t out[32]) {
    for (int i = 0; i < 8; i++)
        put_be32(out + 4 * i, h[i]);
}

/* Add the MACs of two padded rows (or of one, when nb is 0) to acc. */
static void hmac_add(const shax_state *inner, const shax_state *outer, const uint8_t *pa,
                     size_t na, const uint8_t *pb, size_t nb, uint64_t acc[4]) {
    uint32_t ha[8], hb[8];
    uint8_t ba[64], bb[64], mac[32];
    size_t common = na < nb ? na : nb;
    memcpy(ha, inner->h, sizeof ha);
    memcpy(hb, inner->h, sizeof hb);
    compress2(ha, pa, hb, pb, common);
    compress1(ha, pa + 64 * common, na - common);
    outer_block(ha, ba);
    memcpy(ha, outer->h, sizeof ha);
    if (nb) {
        compress1(hb, pb + 64 * common, nb - common);
        outer_block(hb, bb);
        memcpy(hb, outer->h, sizeof hb);
        compress2(ha, ba, hb, bb, 1);
        mac_bytes(hb, mac);
        add256(acc, mac);
    } else {
        compress1(ha, ba, 1);
    }
    mac_bytes(ha, mac);
    add256(acc, mac);
}

/* The RFC 2104 key schedule: the states after key ^ ipad and after key ^ opad. */
static void hmac_keyed(const uint8_t *key, size_t n, shax_state *inner, shax_state *outer) {
    uint8_t block[64] = {0}, pad[64];
    if (n > 64) {
        shax_state k;
        state_init(&k);
        state_update1(&k, key, n);
        state_digest(&k, block);
    } else {
        memcpy(block, key, n);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    state_init(inner);
    state_update1(inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    state_init(outer);
    state_update1(outer, pad, 64);
}

static PyObject *shax_hmac_sum(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer key, prefix;
    PyObject *rows, *result = NULL, *it = NULL, *row;
    shax_state inner, outer;
    uint64_t acc[4] = {0, 0, 0, 0};
    uint8_t out[32];
    row_buf bufs[2] = {{NULL, 0}, {NULL, 0}};
    size_t pending = 0; /* blocks of the row waiting in bufs[0] for a partner */
    if (!PyArg_ParseTuple(args, "y*y*O:hmac_sum", &key, &prefix, &rows))
        return NULL;
    if (require_accelerated() < 0 || !(it = PyObject_GetIter(rows)))
        goto done;
    hmac_keyed(key.buf, (size_t)key.len, &inner, &outer);
    while ((row = PyIter_Next(it))) {
        size_t blocks = pad_row(&bufs[pending ? 1 : 0], &prefix, row);
        Py_DECREF(row);
        if (!blocks)
            goto done;
        if (!pending) {
            pending = blocks;
            continue;
        }
        hmac_add(&inner, &outer, bufs[0].p, pending, bufs[1].p, blocks, acc);
        pending = 0;
    }
    if (PyErr_Occurred()) /* the iterator failed (a database error, say) */
        goto done;
    if (pending)
        hmac_add(&inner, &outer, bufs[0].p, pending, NULL, 0, acc);
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(acc[i / 8] >> (8 * (i % 8)));
    result = PyBytes_FromStringAndSize((const char *)out, 32);
done:
    PyMem_Free(bufs[0].p);
    PyMem_Free(bufs[1].p);
    Py_XDECREF(it);
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    return result;
}

/* --- Merkle Tree Hash (RFC 9162 section 2.1.1) ----------------------------------------- */

/* A leaf is SHA-256(0x00 || data), an interior node SHA-256(0x01 || left || right); pairing
 * left to right and promoting an odd last node unchanged gives the RFC's shape (the left
 * subtree holds the largest power of two). Two leaves, then two nodes, are hashed at a
 * time, interleaved. The same function in Python is `sharechain.crypto.merkle`'s
 * reference path; the tests hold the two to each other and to the RFC 6962 vectors. */

static void leaf_pair(const uint8_t *pa, size_t na, uint8_t oa[32], const uint8_t *pb, size_t nb,
                      uint8_t ob[32]) {
    static const uint8_t zero = 0;
    shax_state a, b;
    state_init(&a);
    state_init(&b);
    state_update1(&a, &zero, 1);
    state_update1(&b, &zero, 1);
    state_update2(&a, pa, na, &b, pb, nb);
    state_digest(&a, oa);
    state_digest(&b, ob);
}

static void leaf_one(const uint8_t *p, size_t n, uint8_t out[32]) {
    static const uint8_t zero = 0;
    shax_state s;
    state_init(&s);
    state_update1(&s, &zero, 1);
    state_update1(&s, p, n);
    state_digest(&s, out);
}

/* Replace the `n` hashes at `level` by the next level up, in place; returns its size. */
static size_t merkle_level(uint8_t *level, size_t n) {
    uint8_t na[65], nb[65];
    size_t pairs = n / 2, i = 0;
    na[0] = nb[0] = 1;
    for (; i + 1 < pairs; i += 2) { /* nodes i and i+1 read hashes 2i..2i+3 before writing */
        memcpy(na + 1, level + 64 * i, 64);
        memcpy(nb + 1, level + 64 * (i + 1), 64);
        shax_state a, b;
        state_init(&a);
        state_init(&b);
        state_update2(&a, na, 65, &b, nb, 65);
        state_digest(&a, level + 32 * i);
        state_digest(&b, level + 32 * (i + 1));
    }
    for (; i < pairs; i++) {
        memcpy(na + 1, level + 64 * i, 64);
        shax_state a;
        state_init(&a);
        state_update1(&a, na, 65);
        state_digest(&a, level + 32 * i);
    }
    if (n % 2) {
        memmove(level + 32 * pairs, level + 32 * (n - 1), 32);
        return pairs + 1;
    }
    return pairs;
}

static PyObject *shax_merkle_root(PyObject *Py_UNUSED(module), PyObject *arg) {
    if (require_accelerated() < 0)
        return NULL;
    /* A tuple of its own, holding a reference to every leaf: the list given (PySequence_Fast
     * would hand back the list itself) may be emptied by another thread once the GIL is out. */
    if (!PyList_Check(arg) && !PyTuple_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "merkle_root() takes a list or tuple of bytes");
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(arg);
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *result = NULL;
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "merkle_root() of no leaves: the empty root is SHA-256('')");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(items[i])) { /* immutable, so safe to read without the GIL */
            PyErr_Format(PyExc_TypeError, "merkle_root() leaf %zd is %.100s, not bytes", i,
                         Py_TYPE(items[i])->tp_name);
            goto done;
        }
    }
    uint8_t *level = PyMem_RawMalloc(32 * (size_t)n);
    if (!level) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t root[32];
    /* The GIL stays released while hashing; the tuple `seq` holds a reference to every leaf. */
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    for (; i + 1 < n; i += 2)
        leaf_pair((const uint8_t *)PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]),
                  level + 32 * i, (const uint8_t *)PyBytes_AS_STRING(items[i + 1]),
                  (size_t)PyBytes_GET_SIZE(items[i + 1]), level + 32 * (i + 1));
    if (i < n)
        leaf_one((const uint8_t *)PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]),
                 level + 32 * i);
    size_t m = (size_t)n;
    while (m > 1)
        m = merkle_level(level, m);
    memcpy(root, level, 32);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(level);
    result = PyBytes_FromStringAndSize((const char *)root, 32);
done:
    Py_DECREF(seq);
    return result;
}

static PyMethodDef shax_methods[] = {
    {"update2", shax_update2, METH_VARARGS,
     "update2(a, data_a, b, data_b): a.update(data_a) and b.update(data_b), interleaved."},
    {"sha256_pair", shax_sha256_pair, METH_VARARGS,
     "sha256_pair(x, y) -> (SHA-256(x), SHA-256(y)), computed side by side."},
    {"hmac_sum", shax_hmac_sum, METH_VARARGS,
     "hmac_sum(key, prefix, rows) -> the sum mod 2^256 (32 bytes, little-endian) of\n"
     "HMAC-SHA256(key, prefix || u32be(len(k)) || k || v) read little-endian, over the\n"
     "(k, v) tuples of rows (k bytes-like or str as UTF-8, v bytes-like)."},
    {"merkle_root", shax_merkle_root, METH_O,
     "merkle_root(leaves) -> the RFC 9162 Merkle Tree Hash of a non-empty list or tuple of\n"
     "bytes (each leaf's data), two hashes at a time."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef shax_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_sha256x",
    .m_doc = "SHA-256 of two streams at once with the x86 SHA extensions.",
    .m_size = -1,
    .m_methods = shax_methods,
};

PyMODINIT_FUNC PyInit__sha256x(void) {
    accelerated = cpu_has_sha();
    if (PyType_Ready(&Sha256Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&shax_module);
    if (!m)
        return NULL;
    Py_INCREF(&Sha256Type);
    if (PyModule_AddObject(m, "Sha256", (PyObject *)&Sha256Type) < 0 ||
        PyModule_AddObjectRef(m, "ACCELERATED", accelerated ? Py_True : Py_False) < 0) {
        Py_DECREF(&Sha256Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
