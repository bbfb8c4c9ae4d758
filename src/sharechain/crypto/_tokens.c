/*
 * Masking tokens of a whole Arrow string column in one call (`sharechain.privacy.tokens`).
 *
 * A token is keyed BLAKE2b with a 16-byte digest (RFC 7693: the key is padded to a
 * 128-byte first block, the digest length is in the parameter block) or HMAC-SHA-256
 * (RFC 2104 over FIPS 180-4 SHA-256) cut to its first 16 bytes, written as 32 lowercase
 * hexadecimal digits. These are the same tokens as `hashlib.blake2b(key=key,
 * digest_size=16)` and `hmac.digest(key, value, "sha256")[:16]`, byte for byte (the
 * tests hold this module to them over random values, empty ones and multibyte text).
 *
 * `hex_tokens(key, algorithm, offsets, data, wide)` reads an Arrow string (or binary)
 * array's buffers as they are: `offsets` holds n + 1 offsets (int32, or int64 when
 * `wide`) into `data`; value i is data[offsets[i]:offsets[i+1]]. It returns the n
 * tokens concatenated (32 * n bytes of hex). The keyed state (BLAKE2b's key block,
 * HMAC's two padded-key blocks) is computed once per call, and the interpreter lock
 * is released while the values are hashed, so two columns or two batches are
 * tokenised on two cores. The code is portable C, with no library and no CPU
 * extension: a build works wherever a C compiler does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TOKEN 16

static const char HEX[] = "0123456789abcdef";

/* ---- BLAKE2b (RFC 7693) ---------------------------------------------------------- */

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
#endif
}

#define B2_G(a, b, c, d, x, y)                                                              \
    do {                                                                                    \
        v[a] = v[a] + v[b] + (x);                                                           \
        v[d] = rotr64(v[d] ^ v[a], 32);                                                     \
        v[c] = v[c] + v[d];                                                                 \
        v[b] = rotr64(v[b] ^ v[c], 24);                                                     \
        v[a] = v[a] + v[b] + (y);                                                           \
        v[d] = rotr64(v[d] ^ v[a], 16);                                                     \
        v[c] = v[c] + v[d];                                                                 \
        v[b] = rotr64(v[b] ^ v[c], 63);                                                     \
    } while (0)

#define B2_ROUND(r)                                                                         \
    do {                                                                                    \
        B2_G(0, 4, 8, 12, m[B2_SIGMA[r][0]], m[B2_SIGMA[r][1]]);                            \
        B2_G(1, 5, 9, 13, m[B2_SIGMA[r][2]], m[B2_SIGMA[r][3]]);                            \
        B2_G(2, 6, 10, 14, m[B2_SIGMA[r][4]], m[B2_SIGMA[r][5]]);                           \
        B2_G(3, 7, 11, 15, m[B2_SIGMA[r][6]], m[B2_SIGMA[r][7]]);                           \
        B2_G(0, 5, 10, 15, m[B2_SIGMA[r][8]], m[B2_SIGMA[r][9]]);                           \
        B2_G(1, 6, 11, 12, m[B2_SIGMA[r][10]], m[B2_SIGMA[r][11]]);                         \
        B2_G(2, 7, 8, 13, m[B2_SIGMA[r][12]], m[B2_SIGMA[r][13]]);                          \
        B2_G(3, 4, 9, 14, m[B2_SIGMA[r][14]], m[B2_SIGMA[r][15]]);                          \
    } while (0)

/* F(h, m, t, f) of RFC 7693 section 3.2; t counts bytes (< 2^64 here). */
static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++)
        m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t;
    if (last)
        v[14] = ~v[14];
    /* The rounds written out, so the message schedule is resolved at compile time. */
    B2_ROUND(0);
    B2_ROUND(1);
    B2_ROUND(2);
    B2_ROUND(3);
    B2_ROUND(4);
    B2_ROUND(5);
    B2_ROUND(6);
    B2_ROUND(7);
    B2_ROUND(8);
    B2_ROUND(9);
    B2_ROUND(10);
    B2_ROUND(11);
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

typedef struct {
    uint64_t keyed[8]; /* the state after the key block, when a message follows it */
    uint8_t empty[TOKEN]; /* the token of the empty value (the key block is then last) */
} b2_key;

static void b2_setup(b2_key *k, const uint8_t *key, size_t keylen) {
    uint8_t block[128] = {0};
    uint64_t h[8];
    memcpy(h, B2_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ ((uint64_t)keylen << 8) ^ TOKEN;
    memcpy(block, key, keylen);
    memcpy(k->keyed, h, sizeof h);
    b2_compress(k->keyed, block, 128, 0);
    b2_compress(h, block, 128, 1);
    for (int i = 0; i < TOKEN; i++)
        k->empty[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
}

static void b2_token(const b2_key *k, const uint8_t *data, size_t len, uint8_t out[TOKEN]) {
    if (len == 0) {
        memcpy(out, k->empty, TOKEN);
        return;
    }
    uint64_t h[8];
    uint64_t t = 128;
    memcpy(h, k->keyed, sizeof h);
    while (len > 128) {
        t += 128;
        b2_compress(h, data, t, 0);
        data += 128;
        len -= 128;
    }
    uint8_t block[128] = {0};
    memcpy(block, data, len);
    b2_compress(h, block, t + len, 1);
    for (int i = 0; i < TOKEN; i++)
        out[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
}

/* ---- SHA-256 (FIPS 180-4) and HMAC (RFC 2104) ------------------------------------- */


#include "_sha256_tables.h"

static inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void s_compress(uint32_t h[8], const uint8_t block[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA256_K[i] + w[i];
        uint32_t t2 = (rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

/* The digest of a hash whose state `h` has taken `done` bytes (whole blocks), then `data`. */
static void s_finish(uint32_t h[8], uint64_t done, const uint8_t *data, size_t len,
                     uint8_t out[32]) {
    uint64_t bits = (done + len) * 8;
    while (len >= 64) {
        s_compress(h, data);
        data += 64;
        len -= 64;
    }
    uint8_t block[128] = {0};
    memcpy(block, data, len);
    block[len] = 0x80;
    size_t end = len + 9 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        block[end - 1 - i] = (uint8_t)(bits >> (8 * i));
    s_compress(h, block);
    if (end == 128)
        s_compress(h, block + 64);
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

typedef struct {
    uint32_t inner[8]; /* SHA-256 state after K ^ ipad */
    uint32_t outer[8]; /* SHA-256 state after K ^ opad */
} hmac_key;

static void hmac_setup(hmac_key *k, const uint8_t *key, size_t keylen) {
    uint8_t ipad[64], opad[64];
    for (size_t i = 0; i < 64; i++) {
        uint8_t b = i < keylen ? key[i] : 0;
        ipad[i] = b ^ 0x36;
        opad[i] = b ^ 0x5c;
    }
    memcpy(k->inner, SHA256_IV, sizeof k->inner);
    memcpy(k->outer, SHA256_IV, sizeof k->outer);
    s_compress(k->inner, ipad);
    s_compress(k->outer, opad);
}

static void hmac_token(const hmac_key *k, const uint8_t *data, size_t len, uint8_t out[TOKEN]) {
    uint32_t h[8];
    uint8_t inner[32], full[32];
    memcpy(h, k->inner, sizeof h);
    s_finish(h, 64, data, len, inner);
    memcpy(h, k->outer, sizeof h);
    s_finish(h, 64, inner, 32, full);
    memcpy(out, full, TOKEN);
}

/* ---- the column ------------------------------------------------------------------- */

static PyObject *tokens_hex_tokens(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer key = {0}, offsets = {0}, data = {0};
    const char *algorithm;
    int wide;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*sy*y*p:hex_tokens", &key, &algorithm, &offsets, &data,
                          &wide))
        return NULL;
    int blake = strcmp(algorithm, "blake2b") == 0;
    size_t width = wide ? 8 : 4;
    if (!blake && strcmp(algorithm, "hmac-sha256") != 0) {
        PyErr_Format(PyExc_ValueError, "unknown token algorithm %R (blake2b or hmac-sha256)",
                     PyTuple_GET_ITEM(args, 1));
        goto done;
    }
    if (key.len < 1 || key.len > 64) {
        PyErr_SetString(PyExc_ValueError, "a token key has 1 to 64 bytes");
        goto done;
    }
    if (offsets.len < (Py_ssize_t)width || offsets.len % width) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold n + 1 whole offsets");
        goto done;
    }
    Py_ssize_t n = offsets.len / (Py_ssize_t)width - 1;
    if (n > PY_SSIZE_T_MAX / (2 * TOKEN)) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *base = data.buf;
    const uint8_t *off = offsets.buf;
    /* Check every value lies inside `data` before hashing any. */
    int64_t previous = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        int64_t o;
        if (wide) {
            memcpy(&o, off + 8 * i, 8);
        } else {
            int32_t o32;
            memcpy(&o32, off + 4 * i, 4);
            o = o32;
        }
        if (o < 0 || o > (int64_t)data.len || (i > 0 && o < previous)) {
            PyErr_Format(PyExc_ValueError, "offset %zd (%lld) is out of order or outside the data",
                         i, (long long)o);
            goto done;
        }
        previous = o;
    }
    result = PyBytes_FromStringAndSize(NULL, n * 2 * TOKEN);
    if (!result)
        goto done;
    char *text = PyBytes_AS_STRING(result);
    b2_key bk;
    hmac_key hk;
    /* The checks above held the GIL; a writable `offsets` (a bytearray) may change once it
     * is released, so each pair is checked again as it is read, and hashed only if it holds. */
    Py_ssize_t changed = -1;
    Py_BEGIN_ALLOW_THREADS;
    if (blake)
        b2_setup(&bk, key.buf, (size_t)key.len);
    else
        hmac_setup(&hk, key.buf, (size_t)key.len);
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t start, end;
        if (wide) {
            memcpy(&start, off + 8 * i, 8);
            memcpy(&end, off + 8 * (i + 1), 8);
        } else {
            int32_t s32, e32;
            memcpy(&s32, off + 4 * i, 4);
            memcpy(&e32, off + 4 * (i + 1), 4);
            start = s32;
            end = e32;
        }
        if (start < 0 || end < start || end > (int64_t)data.len) {
            changed = i;
            break;
        }
        uint8_t token[TOKEN];
        if (blake)
            b2_token(&bk, base + start, (size_t)(end - start), token);
        else
            hmac_token(&hk, base + start, (size_t)(end - start), token);
        char *at = text + i * 2 * TOKEN;
        for (int j = 0; j < TOKEN; j++) {
            at[2 * j] = HEX[token[j] >> 4];
            at[2 * j + 1] = HEX[token[j] & 15];
        }
    }
    Py_END_ALLOW_THREADS;
    if (changed >= 0) {
        Py_CLEAR(result);
        PyErr_Format(PyExc_ValueError,
                     "offset %zd changed while the tokens were computed (another thread wrote "
                     "to the offsets buffer): pass a buffer nothing writes to meanwhile",
                     changed);
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef tokens_methods[] = {
    {"hex_tokens", tokens_hex_tokens, METH_VARARGS,
     "hex_tokens(key, algorithm, offsets, data, wide) -> 32 hex digits per value of an\n"
     "Arrow string array's buffers: keyed BLAKE2b-128 or HMAC-SHA-256 cut to 128 bits."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef tokens_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_tokens",
    .m_doc = "Masking tokens of an Arrow string column, without the interpreter lock.",
    .m_size = -1,
    .m_methods = tokens_methods,
};

PyMODINIT_FUNC PyInit__tokens(void) { return PyModule_Create(&tokens_module); }
