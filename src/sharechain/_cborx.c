/*
 * Deterministic CBOR (RFC 8949 section 4.2.1) of the ledger's plain values, in C
 * (`sharechain.codec.encode`).
 *
 * `encode(value)` writes exactly the bytes of codec's Python writer (`codec._write`) for
 * the values that writer accepts: dict with str keys, list, tuple, str, bytes, int in
 * [-2^64, 2^64), True, False, None, nested. Types are checked exactly (`type(x) is
 * dict`, ...), so subclasses are not plain; bool is true/false, never an integer. Every
 * head is in its shortest form and each map's keys are in bytewise order of their
 * encodings, which for text keys is shorter first, then bytewise on the UTF-8 (the
 * head of a text grows with its length), so the keys' UTF-8 is sorted by (length,
 * memcmp). For anything else (floats, other key types, subclasses, integers that need
 * a bignum tag, sets, tags) and for containers nested deeper than MAX_DEPTH it returns
 * None: "not plain", and codec falls back to cbor2's canonical mode, as the Python
 * writer does on `_NotPlain` and on RecursionError (which is also how a cycle reaches
 * cbor2 and its cycle error). A str that is not encodable as UTF-8 (a lone surrogate)
 * raises the same UnicodeEncodeError as `str.encode()`, and errors are met in the same
 * order as the Python writer meets them: a map's keys all checked for type, then
 * encoded in insertion order, then its values in key order. (One difference, in what
 * is plain only: the Python writer remembers each key tuple's order, so a map whose keys
 * are str subclasses equal to a remembered tuple passes there as plain; here it goes to
 * cbor2, which writes the same bytes.)
 *
 * No Python code runs while a value is written (no comparisons of Python objects, no
 * allocation of objects the garbage collector tracks), so the containers cannot
 * change under the writer. Memory: the output, plus one array of the keys of the maps
 * on the current path (both grow geometrically; small values stay on the C stack).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Containers nested deeper than this are "not plain" and go to cbor2, as the Python
 * writer's RecursionError does (at about 1000 nested maps or 500 nested lists).
 * cbor2.loads refuses more than 400 levels, so whatever `codec.decode` accepts is
 * re-encoded here. */
#define MAX_DEPTH 1000

#define NOT_PLAIN 1 /* return codes: 0 written, -1 exception set, NOT_PLAIN */

#define INLINE_OUT 1024
#define INLINE_KEYS 32

typedef struct {
    const char *utf8; /* the key's UTF-8 (inside the str, or inside `owned`) */
    Py_ssize_t size;
    PyObject *value;  /* borrowed from the dict */
    PyObject *owned;  /* a bytes object holding a non-ASCII key's UTF-8, or NULL */
} Key;

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    Key *keys;
    Py_ssize_t nkeys, capkeys;
    char inline_out[INLINE_OUT];
    Key inline_keys[INLINE_KEYS];
} Writer;

static int reserve(Writer *w, Py_ssize_t extra) {
    if (extra <= w->cap - w->len)
        return 0;
    if (extra > PY_SSIZE_T_MAX - w->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = w->len + extra;
    Py_ssize_t cap = w->cap <= PY_SSIZE_T_MAX / 2 ? w->cap * 2 : PY_SSIZE_T_MAX;
    if (cap < need)
        cap = need;
    char *buf;
    if (w->buf == w->inline_out) {
        buf = PyMem_Malloc((size_t)cap);
        if (buf != NULL)
            memcpy(buf, w->buf, (size_t)w->len);
    } else {
        buf = PyMem_Realloc(w->buf, (size_t)cap);
    }
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static int reserve_keys(Writer *w, Py_ssize_t extra) {
    if (extra <= w->capkeys - w->nkeys)
        return 0;
    Py_ssize_t need = w->nkeys + extra;
    Py_ssize_t cap = w->capkeys * 2;
    if (cap < need)
        cap = need;
    if ((size_t)cap > PY_SSIZE_T_MAX / sizeof(Key)) {
        PyErr_NoMemory();
        return -1;
    }
    Key *keys;
    if (w->keys == w->inline_keys) {
        keys = PyMem_Malloc((size_t)cap * sizeof(Key));
        if (keys != NULL)
            memcpy(keys, w->keys, (size_t)w->nkeys * sizeof(Key));
    } else {
        keys = PyMem_Realloc(w->keys, (size_t)cap * sizeof(Key));
    }
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->keys = keys;
    w->capkeys = cap;
    return 0;
}

/* A head: major type (already shifted into the top three bits) and its argument, in
 * the shortest form. */
static int put_head(Writer *w, unsigned major, uint64_t n) {
    if (reserve(w, 9) < 0)
        return -1;
    unsigned char *p = (unsigned char *)w->buf + w->len;
    if (n < 24) {
        p[0] = (unsigned char)(major | n);
        w->len += 1;
    } else if (n < 0x100) {
        p[0] = (unsigned char)(major | 24);
        p[1] = (unsigned char)n;
        w->len += 2;
    } else if (n < 0x10000) {
        p[0] = (unsigned char)(major | 25);
        p[1] = (unsigned char)(n >> 8);
        p[2] = (unsigned char)n;
        w->len += 3;
    } else if (n < 0x100000000ULL) {
        p[0] = (unsigned char)(major | 26);
        for (int i = 0; i < 4; i++)
            p[1 + i] = (unsigned char)(n >> (24 - 8 * i));
        w->len += 5;
    } else {
        p[0] = (unsigned char)(major | 27);
        for (int i = 0; i < 8; i++)
            p[1 + i] = (unsigned char)(n >> (56 - 8 * i));
        w->len += 9;
    }
    return 0;
}

static int put_bytes(Writer *w, unsigned major, const char *data, Py_ssize_t size) {
    if (put_head(w, major, (uint64_t)size) < 0 || reserve(w, size) < 0)
        return -1;
    memcpy(w->buf + w->len, data, (size_t)size);
    w->len += size;
    return 0;
}

/* A str's UTF-8: the str's own data when it is ASCII, else a new bytes object in
 * *owned (str.encode()'s encoder, so the same UnicodeEncodeError for a surrogate). */
static int utf8_of(PyObject *s, const char **utf8, Py_ssize_t *size, PyObject **owned) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0)
        return -1;
#endif
    if (PyUnicode_IS_ASCII(s)) {
        *utf8 = (const char *)PyUnicode_DATA(s);
        *size = PyUnicode_GET_LENGTH(s);
        *owned = NULL;
        return 0;
    }
    PyObject *b = PyUnicode_AsUTF8String(s);
    if (b == NULL)
        return -1;
    *utf8 = PyBytes_AS_STRING(b);
    *size = PyBytes_GET_SIZE(b);
    *owned = b;
    return 0;
}

static int put_text(Writer *w, PyObject *s) {
    const char *utf8;
    Py_ssize_t size;
    PyObject *owned;
    if (utf8_of(s, &utf8, &size, &owned) < 0)
        return -1;
    int rc = put_bytes(w, 0x60, utf8, size);
    Py_XDECREF(owned);
    return rc;
}

static int put_int(Writer *w, PyObject *x) {
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow == 0) {
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v >= 0)
            return put_head(w, 0x00, (uint64_t)v);
        return put_head(w, 0x20, (uint64_t)(-(v + 1))); /* -1 - v, no overflow */
    }
    /* Outside a long long: 2^63 <= x or x < -2^63. Major type 1 carries -1 - x. */
    PyObject *arg = overflow > 0 ? Py_NewRef(x) : PyNumber_Invert(x);
    if (arg == NULL)
        return -1;
    unsigned long long u = PyLong_AsUnsignedLongLong(arg);
    Py_DECREF(arg);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return NOT_PLAIN; /* a bignum: tag 2 or 3, cbor2's */
    }
    return put_head(w, overflow > 0 ? 0x00 : 0x20, u);
}

/* Bytewise order of the keys' encodings: shorter first, then bytewise (the keys of a
 * dict are distinct, so never equal). */
static inline int key_cmp_keys(const Key *x, const Key *y) {
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return memcmp(x->utf8, y->utf8, (size_t)x->size);
}

static int key_cmp(const void *a, const void *b) { return key_cmp_keys(a, b); }

/* Small maps (all of the ledger's) are sorted by insertion into `order`, indices into
 * `keys`, which moves a byte where qsort would move a Key. */
#define SMALL_MAP 64

static void sort_small(const Key *keys, unsigned char *order, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t j = i;
        while (j > 0 && key_cmp_keys(&keys[i], &keys[order[j - 1]]) < 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (unsigned char)i;
    }
}

static int put_value(Writer *w, PyObject *x, int depth);

static int put_map(Writer *w, PyObject *d, int depth) {
    Py_ssize_t n = PyDict_GET_SIZE(d);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    /* As the Python writer's plan: every key's type first, then their encodings. */
    while (PyDict_Next(d, &pos, &k, &v))
        if (!PyUnicode_CheckExact(k))
            return NOT_PLAIN;
    if (put_head(w, 0xA0, (uint64_t)n) < 0 || reserve_keys(w, n) < 0)
        return -1;
    Py_ssize_t base = w->nkeys, i = 0;
    int rc = 0;
    pos = 0;
    while (i < n && PyDict_Next(d, &pos, &k, &v)) {
        Key *key = &w->keys[base + i];
        if (utf8_of(k, &key->utf8, &key->size, &key->owned) < 0) {
            rc = -1;
            break;
        }
        key->value = v;
        i++;
        w->nkeys++;
    }
    if (rc == 0) {
        unsigned char order[SMALL_MAP];
        if (n <= SMALL_MAP)
            sort_small(w->keys + base, order, n);
        else
            qsort(w->keys + base, (size_t)n, sizeof(Key), key_cmp);
        for (i = 0; i < n && rc == 0; i++) {
            /* Re-read: a nested map may have moved the array. */
            Key key = w->keys[base + (n <= SMALL_MAP ? order[i] : i)];
            rc = put_bytes(w, 0x60, key.utf8, key.size);
            if (rc == 0)
                rc = put_value(w, key.value, depth + 1);
        }
    }
    for (i = base; i < w->nkeys; i++)
        Py_XDECREF(w->keys[i].owned);
    w->nkeys = base;
    return rc;
}

static int put_value(Writer *w, PyObject *x, int depth) {
    PyTypeObject *t = Py_TYPE(x);
    if (t == &PyUnicode_Type)
        return put_text(w, x);
    if (t == &PyLong_Type)
        return put_int(w, x);
    if (t == &PyBytes_Type)
        return put_bytes(w, 0x40, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x));
    if (t == &PyDict_Type) {
        if (depth >= MAX_DEPTH)
            return NOT_PLAIN;
        return put_map(w, x, depth);
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        if (depth >= MAX_DEPTH)
            return NOT_PLAIN;
        int list = t == &PyList_Type;
        Py_ssize_t n = list ? PyList_GET_SIZE(x) : PyTuple_GET_SIZE(x);
        if (put_head(w, 0x80, (uint64_t)n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            int rc = put_value(w, list ? PyList_GET_ITEM(x, i) : PyTuple_GET_ITEM(x, i),
                               depth + 1);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    unsigned char simple;
    if (x == Py_None)
        simple = 0xF6;
    else if (x == Py_True)
        simple = 0xF5;
    else if (x == Py_False)
        simple = 0xF4;
    else
        return NOT_PLAIN;
    if (reserve(w, 1) < 0)
        return -1;
    w->buf[w->len++] = (char)simple;
    return 0;
}

static PyObject *cborx_encode(PyObject *module, PyObject *value) {
    (void)module;
    Writer w;
    w.buf = w.inline_out;
    w.len = 0;
    w.cap = INLINE_OUT;
    w.keys = w.inline_keys;
    w.nkeys = 0;
    w.capkeys = INLINE_KEYS;
    int rc = put_value(&w, value, 0);
    PyObject *result = NULL;
    if (rc == 0)
        result = PyBytes_FromStringAndSize(w.buf, w.len);
    else if (rc == NOT_PLAIN)
        result = Py_NewRef(Py_None);
    if (w.buf != w.inline_out)
        PyMem_Free(w.buf);
    if (w.keys != w.inline_keys)
        PyMem_Free(w.keys);
    return result;
}

static PyMethodDef cborx_methods[] = {
    {"encode", cborx_encode, METH_O,
     "encode(value, /) -> the deterministic CBOR of a plain value (dicts with str keys,\n"
     "lists, tuples, str, bytes, int in [-2**64, 2**64), bool, None), or None when the\n"
     "value holds anything else or nests deeper than MAX_DEPTH containers."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef cborx_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_cborx",
    .m_doc = "Deterministic CBOR (RFC 8949 4.2.1) of plain values: codec.encode's fast path.",
    .m_size = -1,
    .m_methods = cborx_methods,
};

PyMODINIT_FUNC PyInit__cborx(void) {
    PyObject *m = PyModule_Create(&cborx_module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
