/* The per-record part of the Kafka RecordBatch v2 codec, in C so that no Python bytecode
 * runs per record (project rule: whole batches on hot paths).
 *
 * Decoding (decode_columns) fills caller-allocated numpy arrays that become the Arrow
 * buffers of the offset, timestamp, key and value columns in one pass, and the header
 * spans, which decode_headers + gather turn into the header column when records carry
 * any. Encoding writes the record section
 * from Arrow's own buffers (offsets + data + validity) into a caller-sized buffer.
 * Every length read from the input is checked against the end of its record before use,
 * and every loop is bounded by a count that was itself checked against the bytes left.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    const char *err;
} cursor;

static inline uint64_t read_uvarint(cursor *c, int max_bytes) {
    /* One byte is the common case (lengths and deltas of small records): no loop. */
    if (c->p < c->end && !(*c->p & 0x80)) return *c->p++;
    uint64_t result = 0;
    int shift = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (c->p >= c->end) {
            c->err = "varint runs past the end of the record";
            return 0;
        }
        uint8_t b = *c->p++;
        result |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return result;
        shift += 7;
    }
    c->err = "varint too long";
    return 0;
}

static inline int64_t read_varint(cursor *c) { /* zigzag int32 */
    uint64_t raw = read_uvarint(c, 5);
    if (raw > 0xFFFFFFFFull) { c->err = "varint exceeds 32 bits"; return 0; }
    return (int64_t)(int32_t)((uint32_t)(raw >> 1) ^ (uint32_t)(-(int64_t)(raw & 1)));
}

static inline int64_t read_varlong(cursor *c) { /* zigzag int64 */
    uint64_t raw = read_uvarint(c, 10);
    return (int64_t)((raw >> 1) ^ (uint64_t)(-(int64_t)(raw & 1)));
}

/* A length (-1 = null when allow_null) whose bytes must lie inside the cursor. */
static inline int64_t read_span(cursor *c, int allow_null, const uint8_t *base, int32_t *start) {
    int64_t n = read_varint(c);
    if (c->err) return 0;
    if (start) *start = (int32_t)(c->p - base);
    if (n == -1 && allow_null) return -1;
    if (n < 0) { c->err = "negative length"; return 0; }
    if (n > c->end - c->p) { c->err = "length runs past the end of the record"; return 0; }
    c->p += n;
    return n;
}

#define GET_BUF(obj, view, writable)                                                  \
    if (PyObject_GetBuffer(obj, &view, (writable) ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) \
        goto fail;

static int need(Py_buffer *b, Py_ssize_t bytes, const char *name) {
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "output array %s too small", name);
        return 0;
    }
    return 1;
}

/* Appends one key or value span to an Arrow binary column being built: offsets[i + 1],
 * its validity bit (bitmap zeroed by the caller) and its bytes. `cap` bounds `data`. */
static inline int put_span(const uint8_t *src, int64_t len, Py_ssize_t i, int32_t *offsets, uint8_t *valid, uint8_t *data,
                    Py_ssize_t cap, int64_t *nulls) {
    int32_t at = offsets[i];
    if (len < 0) {
        (*nulls)++;
        offsets[i + 1] = at;
        return 1;
    }
    if (len > cap - at) return 0;
    valid[i >> 3] |= (uint8_t)(1u << (i & 7));
    memcpy(data + at, src, (size_t)len);
    offsets[i + 1] = at + (int32_t)len;
    return 1;
}

/* decode_columns(data, count, base_offset, base_timestamp, offsets i64[n], timestamps i64[n],
 *                key_offsets i32[n+1], key_valid u8[(n+7)/8], key_data u8[cap],
 *                val_offsets i32[n+1], val_valid u8[(n+7)/8], val_data u8[cap],
 *                hdr_pos i32[n], hdr_count i32[n])
 *     -> (key_bytes, key_nulls, val_bytes, val_nulls, total headers)
 * One pass over a v2 record section that leaves Arrow's own buffers for the offset,
 * timestamp, key and value columns (absolute offsets and timestamps; validity bitmaps,
 * zeroed by the caller, LSB first; each span's bytes copied once) and the header spans for
 * decode_headers. Every length is checked against its record before use (a malformed
 * section raises ValueError("<reason> at byte N")); the GIL is released for the loop. */
static PyObject *decode_columns(PyObject *self, PyObject *args) {
    PyObject *o[14];
    Py_buffer b[14];
    int got = 0;
    Py_ssize_t count;
    long long base_offset, base_ts;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnLLOOOOOOOOOO", &o[0], &count, &base_offset, &base_ts, &o[4], &o[5], &o[6], &o[7],
                          &o[8], &o[9], &o[10], &o[11], &o[12], &o[13]))
        return NULL;
    for (int i = 0; i < 14; i++) {
        if (i >= 1 && i <= 3) continue;
        GET_BUF(o[i], b[i], i != 0);
        got |= 1 << i;
    }
    if (b[0].len > INT32_MAX) { PyErr_SetString(PyExc_ValueError, "record section over 2 GiB"); goto fail; }
    if (count < 0 || count > b[0].len) { PyErr_SetString(PyExc_ValueError, "record count exceeds the bytes"); goto fail; }
    if (!need(&b[4], count * 8, "offsets") || !need(&b[5], count * 8, "timestamps") ||
        !need(&b[6], (count + 1) * 4, "key_offsets") || !need(&b[7], (count + 7) / 8, "key_valid") ||
        !need(&b[9], (count + 1) * 4, "val_offsets") || !need(&b[10], (count + 7) / 8, "val_valid") ||
        !need(&b[12], count * 4, "hdr_pos") || !need(&b[13], count * 4, "hdr_count"))
        goto fail;
    {
        const uint8_t *base = (const uint8_t *)b[0].buf;
        const uint8_t *end = base + b[0].len;
        int64_t *offsets = b[4].buf, *timestamps = b[5].buf;
        int32_t *ko = b[6].buf, *vo = b[9].buf, *hdr_pos = b[12].buf, *hdr_count = b[13].buf;
        uint8_t *kv = b[7].buf, *kd = b[8].buf, *vv = b[10].buf, *vd = b[11].buf;
        Py_ssize_t kcap = b[8].len < INT32_MAX ? b[8].len : INT32_MAX;
        Py_ssize_t vcap = b[11].len < INT32_MAX ? b[11].len : INT32_MAX;
        int64_t headers = 0, key_nulls = 0, val_nulls = 0;
        const char *overflow = NULL;
        cursor c = {base, end, NULL};
        ko[0] = vo[0] = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < count; i++) {
            int64_t length = read_varint(&c);
            if (c.err) break;
            if (length < 0 || length > end - c.p) { c.err = "record length runs past the batch"; break; }
            cursor r = {c.p, c.p + length, NULL};
            if (r.p >= r.end) { r.err = "empty record"; c = r; break; }
            r.p++; /* attributes: unused in v2 */
            int64_t ts_delta = read_varlong(&r);
            int64_t off_delta = read_varint(&r);
            if (r.err) { c = r; break; }
            timestamps[i] = (int64_t)((uint64_t)base_ts + (uint64_t)ts_delta);
            offsets[i] = (int64_t)((uint64_t)base_offset + (uint64_t)off_delta);
            int32_t kstart, vstart;
            int64_t klen = read_span(&r, 1, base, &kstart);
            if (r.err) { c = r; break; }
            int64_t vlen = read_span(&r, 1, base, &vstart);
            if (r.err) { c = r; break; }
            if (!put_span(base + kstart, klen, i, ko, kv, kd, kcap, &key_nulls) ||
                !put_span(base + vstart, vlen, i, vo, vv, vd, vcap, &val_nulls)) {
                overflow = "key or value output too small";
                break;
            }
            int64_t nh = read_varint(&r);
            if (r.err) { c = r; break; }
            if (nh < 0 || nh > (r.end - r.p) / 2) { r.err = "header count exceeds the record"; c = r; break; }
            hdr_pos[i] = (int32_t)(r.p - base);
            hdr_count[i] = (int32_t)nh;
            for (int64_t h = 0; h < nh && !r.err; h++) {
                read_span(&r, 0, base, NULL);
                read_span(&r, 1, base, NULL);
            }
            if (r.err) { c = r; break; }
            if (r.p != r.end) { r.err = "record length does not match its fields"; c = r; break; }
            headers += nh;
            c.p = r.end;
        }
        if (!c.err && !overflow && c.p != end) c.err = "bytes left after the last record";
        Py_END_ALLOW_THREADS
        if (overflow) { PyErr_SetString(PyExc_ValueError, overflow); goto fail; }
        if (c.err) {
            PyErr_Format(PyExc_ValueError, "%s at byte %zd", c.err, (Py_ssize_t)(c.p - base));
            goto fail;
        }
        for (int i = 0; i < 14; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
        return Py_BuildValue("(LLLLL)", (long long)ko[count], (long long)key_nulls, (long long)vo[count],
                             (long long)val_nulls, (long long)headers);
    }
fail:
    for (int i = 0; i < 14; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
    return NULL;
}

/* decode_headers(data, count, hdr_pos, hdr_count, hk_start, hk_len, hv_start, hv_len)
 * Second pass over spans that decode_columns already validated. */
static PyObject *decode_headers(PyObject *self, PyObject *args) {
    PyObject *o[8];
    Py_buffer b[8];
    int got = 0;
    Py_ssize_t count;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOOOOOO", &o[0], &count, &o[2], &o[3], &o[4], &o[5], &o[6], &o[7])) return NULL;
    for (int i = 0; i < 8; i++) {
        if (i == 1) continue;
        GET_BUF(o[i], b[i], i >= 4);
        got |= 1 << i;
    }
    if (!need(&b[2], count * 4, "hdr_pos") || !need(&b[3], count * 4, "hdr_count")) goto fail;
    {
        const uint8_t *base = (const uint8_t *)b[0].buf;
        const int32_t *hdr_pos = b[2].buf, *hdr_count = b[3].buf;
        int32_t *hk_start = b[4].buf, *hk_len = b[5].buf, *hv_start = b[6].buf, *hv_len = b[7].buf;
        Py_ssize_t cap = b[4].len / 4, j = 0;
        if (b[5].len / 4 < cap || b[6].len / 4 < cap || b[7].len / 4 < cap) {
            PyErr_SetString(PyExc_ValueError, "header output arrays differ in size");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            if (hdr_pos[i] < 0 || hdr_pos[i] > b[0].len) { PyErr_SetString(PyExc_ValueError, "bad hdr_pos"); goto fail; }
            cursor r = {base + hdr_pos[i], base + b[0].len, NULL};
            for (int32_t h = 0; h < hdr_count[i]; h++, j++) {
                if (j >= cap) { PyErr_SetString(PyExc_ValueError, "more headers than the output holds"); goto fail; }
                hk_len[j] = (int32_t)read_span(&r, 0, base, &hk_start[j]);
                hv_len[j] = (int32_t)read_span(&r, 1, base, &hv_start[j]);
                if (r.err) { PyErr_Format(PyExc_ValueError, "%s at byte %zd", r.err, (Py_ssize_t)(r.p - base)); goto fail; }
            }
        }
    }
    for (int i = 0; i < 8; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < 8; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
    return NULL;
}

/* gather(src, start i32, length i32, out) -> bytes written: copies each span with
 * length >= 0 (a null, -1, copies nothing) back to back into out. */
static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *o[4];
    Py_buffer b[4];
    int got = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    for (int i = 0; i < 4; i++) {
        GET_BUF(o[i], b[i], i == 3);
        got |= 1 << i;
    }
    {
        Py_ssize_t n = b[1].len / 4, pos = 0;
        const int32_t *start = b[1].buf, *len = b[2].buf;
        const uint8_t *src = b[0].buf;
        uint8_t *out = b[3].buf;
        if (b[2].len / 4 != n) { PyErr_SetString(PyExc_ValueError, "start and length differ in size"); goto fail; }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (len[i] <= 0) continue;
            if (start[i] < 0 || (Py_ssize_t)start[i] + len[i] > b[0].len || pos + len[i] > b[3].len) {
                PyErr_SetString(PyExc_ValueError, "span outside its buffer");
                goto fail;
            }
            memcpy(out + pos, src + start[i], (size_t)len[i]);
            pos += len[i];
        }
        for (int i = 0; i < 4; i++) PyBuffer_Release(&b[i]);
        return PyLong_FromSsize_t(pos);
    }
fail:
    for (int i = 0; i < 4; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
    return NULL;
}

static uint8_t *put_uvarint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
    *p++ = (uint8_t)v;
    return p;
}
static int uvarint_size(uint64_t v) { int n = 1; while (v >= 0x80) { v >>= 7; n++; } return n; }
static uint64_t zz32(int64_t v) { int32_t x = (int32_t)v; return (uint32_t)((uint32_t)x << 1) ^ (uint32_t)(x >> 31); }
static uint64_t zz64(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

/* encode_records(out, n, off_delta i64, ts_delta i64,
 *                key_offsets i32[n+1], key_valid u8[n], key_data,
 *                val_offsets i32[n+1], val_valid u8[n], val_data,
 *                hdr_lo i32[n], hdr_hi i32[n],
 *                hk_offsets i32[m+1], hk_data, hv_offsets i32[m+1], hv_valid u8[m], hv_data) -> bytes written
 * Offsets are absolute positions into their data buffers (Arrow's layout with the slice
 * offset applied by the caller); record i has headers hdr_lo[i] .. hdr_hi[i] - 1. */
static PyObject *encode_records(PyObject *self, PyObject *args) {
    PyObject *o[17];
    Py_buffer b[17];
    int got = 0;
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOOOOOOOOOOOOOOO", &o[0], &n, &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                          &o[9], &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16]))
        return NULL;
    for (int i = 0; i < 17; i++) {
        if (i == 1) continue;
        GET_BUF(o[i], b[i], i == 0);
        got |= 1 << i;
    }
    if (n < 0 || !need(&b[2], n * 8, "off_delta") || !need(&b[3], n * 8, "ts_delta") ||
        !need(&b[4], (n + 1) * 4, "key_offsets") || !need(&b[5], n, "key_valid") ||
        !need(&b[7], (n + 1) * 4, "val_offsets") || !need(&b[8], n, "val_valid") ||
        !need(&b[10], n * 4, "hdr_lo") || !need(&b[11], n * 4, "hdr_hi"))
        goto fail;
    {
        uint8_t *out = b[0].buf, *p = out, *end = out + b[0].len;
        const int64_t *off_delta = b[2].buf, *ts_delta = b[3].buf;
        const int32_t *ko = b[4].buf, *vo = b[7].buf, *hlo = b[10].buf, *hhi = b[11].buf, *hko = b[12].buf,
                      *hvo = b[14].buf;
        const uint8_t *kv = b[5].buf, *vv = b[8].buf, *hvv = b[15].buf;
        const uint8_t *kd = b[6].buf, *vd = b[9].buf, *hkd = b[13].buf, *hvd = b[16].buf;
        Py_ssize_t m = b[12].len / 4 - 1;
        if (b[14].len / 4 - 1 < m) m = b[14].len / 4 - 1;
        if (b[15].len < m) m = b[15].len;
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t klen = kv[i] ? (int64_t)ko[i + 1] - ko[i] : -1;
            int64_t vlen = vv[i] ? (int64_t)vo[i + 1] - vo[i] : -1;
            int64_t h0 = hlo[i], h1 = hhi[i];
            if (h0 < 0 || h1 < h0 || (h1 > h0 && h1 > m)) {
                PyErr_SetString(PyExc_ValueError, "header offsets outside the header arrays");
                goto fail;
            }
            if ((klen > 0 && (ko[i] < 0 || ko[i + 1] > b[6].len)) || (vlen > 0 && (vo[i] < 0 || vo[i + 1] > b[9].len)) ||
                (h1 > h0 && (hko[h0] < 0 || hko[h1] > b[13].len || hvo[h0] < 0 || hvo[h1] > b[16].len))) {
                PyErr_SetString(PyExc_ValueError, "offsets outside their data buffers");
                goto fail;
            }
            int64_t body = 1 + uvarint_size(zz64(ts_delta[i])) + uvarint_size(zz32(off_delta[i])) +
                           uvarint_size(zz32(klen)) + (klen > 0 ? klen : 0) + uvarint_size(zz32(vlen)) +
                           (vlen > 0 ? vlen : 0) + uvarint_size(zz32(h1 - h0));
            for (int64_t h = h0; h < h1; h++) {
                int64_t hk = (int64_t)hko[h + 1] - hko[h];
                int64_t hv = hvv[h] ? (int64_t)hvo[h + 1] - hvo[h] : -1;
                body += uvarint_size(zz32(hk)) + hk + uvarint_size(zz32(hv)) + (hv > 0 ? hv : 0);
            }
            if (body + 5 > end - p) { PyErr_SetString(PyExc_ValueError, "output buffer too small"); goto fail; }
            p = put_uvarint(p, zz32(body));
            *p++ = 0;
            p = put_uvarint(p, zz64(ts_delta[i]));
            p = put_uvarint(p, zz32(off_delta[i]));
            p = put_uvarint(p, zz32(klen));
            if (klen > 0) { memcpy(p, kd + ko[i], (size_t)klen); p += klen; }
            p = put_uvarint(p, zz32(vlen));
            if (vlen > 0) { memcpy(p, vd + vo[i], (size_t)vlen); p += vlen; }
            p = put_uvarint(p, zz32(h1 - h0));
            for (int64_t h = h0; h < h1; h++) {
                int64_t hk = (int64_t)hko[h + 1] - hko[h];
                int64_t hv = hvv[h] ? (int64_t)hvo[h + 1] - hvo[h] : -1;
                p = put_uvarint(p, zz32(hk));
                if (hk > 0) { memcpy(p, hkd + hko[h], (size_t)hk); p += hk; }
                p = put_uvarint(p, zz32(hv));
                if (hv > 0) { memcpy(p, hvd + hvo[h], (size_t)hv); p += hv; }
            }
        }
        for (int i = 0; i < 17; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
        return PyLong_FromSsize_t(p - out);
    }
fail:
    for (int i = 0; i < 17; i++) if (got & (1 << i)) PyBuffer_Release(&b[i]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_columns", decode_columns, METH_VARARGS, "Parse a v2 record section into Arrow column buffers."},
    {"decode_headers", decode_headers, METH_VARARGS, "Parse the header spans of decoded records."},
    {"gather", gather, METH_VARARGS, "Copy byte spans back to back."},
    {"encode_records", encode_records, METH_VARARGS, "Write a v2 record section from Arrow buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
