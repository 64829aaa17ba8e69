/* The shape check of a segment's Parquet footer (thrift compact protocol), run by
 * footer.py's parse_footer before pyarrow's metadata objects see the footer.
 *
 * pyarrow builds a column chunk's metadata (`row_group(i).column(j)`) and its statistics in
 * C++ that throws on inconsistent thrift (a chunk typed unlike its schema column, a level
 * histogram of the wrong length, statistics too short for their type, encrypted metadata), and
 * its Cython layer does not translate those throws: the process aborts ("Fatal Python error:
 * Aborted"; found by tests/fuzz/test_fuzz_segment.py). A footer is only damaged like that
 * behind a matching CRC32C (a writer bug, a collision), but an agent must never die of one.
 *
 * So this walks the whole footer and accepts only what our writers produce: every row group
 * holds one chunk per leaf column, of that column's physical type and path, unencrypted, with
 * statistics whose min/max fit the type and level histograms as long as the column's levels,
 * schema repetitions pyarrow reads as we do, no geospatial statistics. `problem(bytes)` says
 * what is wrong (parse_footer adds where, as CorruptDataError) or returns None. C because it
 * reads every byte: the same walk in Python cost ~15x pyarrow's own parse, in C it is ~5% of it.
 * Every read is bounds-checked; nothing is allocated per field (fuzzed under ASan/UBSan). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

enum { T_TRUE = 1, T_FALSE, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE, T_BINARY, T_LIST, T_SET, T_MAP, T_STRUCT, T_UUID };
enum { P_BOOLEAN = 0, P_INT32, P_INT64, P_INT96, P_FLOAT, P_DOUBLE, P_BYTE_ARRAY, P_FLBA };
enum { REQUIRED = 0, OPTIONAL = 1, REPEATED = 2 };
#define MAX_DEPTH 64

static const char *TYPE_NAMES[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};

typedef struct {
    const uint8_t *name;
    Py_ssize_t name_len;
    Py_ssize_t parent; /* node index, -1 for the root's children */
    int physical;      /* -1: none (a group) */
    int type_length;
    int max_def, max_rep;
} Node;

typedef struct {
    const uint8_t *p;
    Py_ssize_t pos, end;
    char err[320];
    int failed;
} R;

typedef struct {
    Node *nodes;
    Py_ssize_t leaf, group;
} Where;

static const char *path_text(Node *nodes, Py_ssize_t leaf, char *buf, size_t cap);

static int fail(R *r, const char *fmt, ...) {
    if (!r->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
        r->failed = 1;
    }
    return -1;
}

static int rbyte(R *r, int *out) {
    if (r->pos >= r->end) return fail(r, "footer thrift ends early");
    *out = r->p[r->pos++];
    return 0;
}

static int varint(R *r, uint64_t *out) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        int b = 0;
        if (rbyte(r, &b)) return -1;
        result |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = result;
            return 0;
        }
    }
    return fail(r, "over-long varint in footer thrift");
}

static int zigzag(R *r, int64_t *out) {
    uint64_t n;
    if (varint(r, &n)) return -1;
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    return 0;
}

static int binary(R *r, const uint8_t **data, Py_ssize_t *len) {
    uint64_t n;
    if (varint(r, &n)) return -1;
    if (n > (uint64_t)(r->end - r->pos)) return fail(r, "binary of %llu bytes past the footer's end", (unsigned long long)n);
    *data = r->p + r->pos;
    *len = (Py_ssize_t)n;
    r->pos += (Py_ssize_t)n;
    return 0;
}

/* The next field header: *id and *kind (0 = the struct's end). */
static int field(R *r, int64_t *id, int *kind) {
    int b = 0;
    if (rbyte(r, &b)) return -1;
    *kind = b & 0x0F;
    if (*kind == 0) return 0;
    if (b >> 4) {
        *id += b >> 4;
        return 0;
    }
    if (zigzag(r, id)) return -1;
    /* Thrift field ids are i16: bounded, so the deltas added later cannot overflow. */
    if (*id < -32768 || *id > 32767) return fail(r, "field id %lld out of range", (long long)*id);
    return 0;
}

static int list_header(R *r, Py_ssize_t *size, int *element) {
    int b = 0;
    if (rbyte(r, &b)) return -1;
    uint64_t n = (uint64_t)(b >> 4);
    if (n == 15 && varint(r, &n)) return -1;
    if (n > (uint64_t)(r->end - r->pos)) /* every element takes at least one byte */
        return fail(r, "list of %llu elements past the footer's end", (unsigned long long)n);
    *size = (Py_ssize_t)n;
    *element = b & 0x0F;
    return 0;
}

static int skip(R *r, int kind, int depth) {
    uint64_t n;
    const uint8_t *d;
    Py_ssize_t len, size;
    int b = 0, element;
    if (depth > MAX_DEPTH) return fail(r, "footer thrift nested too deeply");
    switch (kind) {
    case T_TRUE: case T_FALSE: return 0;
    case T_I16: case T_I32: case T_I64: return varint(r, &n);
    case T_BYTE: len = 1; break;
    case T_DOUBLE: len = 8; break;
    case T_UUID: len = 16; break;
    case T_BINARY: return binary(r, &d, &len);
    case T_LIST: case T_SET:
        if (list_header(r, &size, &element)) return -1;
        for (Py_ssize_t i = 0; i < size; i++) {
            /* A bool element of a list is one byte, unlike a bool field (no payload). */
            if (element == T_TRUE || element == T_FALSE ? rbyte(r, &b) : skip(r, element, depth + 1)) return -1;
        }
        return 0;
    case T_MAP:
        if (varint(r, &n)) return -1;
        if (n > (uint64_t)(r->end - r->pos)) return fail(r, "map past the footer's end");
        if (n && rbyte(r, &b)) return -1;
        for (uint64_t i = 0; i < n; i++)
            if (skip(r, b >> 4, depth + 1) || skip(r, b & 0x0F, depth + 1)) return -1;
        return 0;
    case T_STRUCT: {
        int64_t id = 0;
        int sub;
        for (;;) {
            if (field(r, &id, &sub)) return -1;
            if (!sub) return 0;
            if (skip(r, sub, depth + 1)) return -1;
        }
    }
    default: return fail(r, "unknown thrift type %d", kind);
    }
    if (r->end - r->pos < len) return fail(r, "footer thrift ends early");
    r->pos += len;
    return 0;
}

/* A failure inside one column chunk: "row group G column 'a.b.c' " + the message. */
static int fail_at(R *r, const Where *w, const char *fmt, ...) {
    if (!r->failed) {
        char path[160];
        int n = snprintf(r->err, sizeof r->err, "row group %zd column '%s' ", w->group, path_text(w->nodes, w->leaf, path, sizeof path));
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < sizeof r->err) vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
        va_end(ap);
        r->failed = 1;
    }
    return -1;
}

/* "a.b.c" of node `leaf` into buf, for messages. */
static const char *path_text(Node *nodes, Py_ssize_t leaf, char *buf, size_t cap) {
    Py_ssize_t chain[MAX_DEPTH];
    int depth = 0;
    for (Py_ssize_t i = leaf; i >= 0 && depth < MAX_DEPTH; i = nodes[i].parent) chain[depth++] = i;
    size_t used = 0;
    buf[0] = 0;
    for (int k = depth - 1; k >= 0 && used + 2 < cap; k--) {
        int n = snprintf(buf + used, cap - used, "%s%.*s", k == depth - 1 ? "" : ".", (int)nodes[chain[k]].name_len, (const char *)nodes[chain[k]].name);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

static int schema_element(R *r, Node *node) {
    int64_t id = 0, v;
    int kind;
    Py_ssize_t children = 0;
    node->physical = -1;
    node->type_length = 0;
    node->max_def = node->max_rep = 0; /* repetition, held here until the tree is built */
    node->name = (const uint8_t *)"";
    node->name_len = 0;
    node->parent = (Py_ssize_t)0; /* children count, held here until the tree is built */
    for (;;) {
        if (field(r, &id, &kind)) return -1;
        if (!kind) break;
        if (id == 1 && kind == T_I32) {
            if (zigzag(r, &v)) return -1;
            node->physical = (v < 0 || v > P_FLBA) ? 99 : (int)v;
        } else if (id == 2 && kind == T_I32) {
            if (zigzag(r, &v)) return -1;
            node->type_length = (v < 0 || v > (1 << 20)) ? -1 : (int)v;
        } else if (id == 3 && kind == T_I32) {
            if (zigzag(r, &v)) return -1;
            /* pyarrow reads any other value as required: refused, so both agree on the levels. */
            if (v != REQUIRED && v != OPTIONAL && v != REPEATED) return fail(r, "schema repetition %lld", (long long)v);
            node->max_rep = (int)v;
        } else if (id == 4 && kind == T_BINARY) {
            if (binary(r, &node->name, &node->name_len)) return -1;
            PyObject *s = PyUnicode_DecodeUTF8((const char *)node->name, node->name_len, "strict");
            if (!s) {
                PyErr_Clear();
                return fail(r, "schema name is not UTF-8");
            }
            Py_DECREF(s);
        } else if (id == 5 && kind == T_I32) {
            if (zigzag(r, &v)) return -1;
            if (v < 0 || v > (int64_t)(r->end)) return fail(r, "schema element with %lld children", (long long)v);
            children = (Py_ssize_t)v;
        } else if (skip(r, kind, 1)) return -1;
    }
    node->parent = children;
    return 0;
}

/* Builds the tree in place: parent links, max levels; returns the leaf node indices. */
static int build_tree(R *r, Node *nodes, Py_ssize_t count, Py_ssize_t *leaves, Py_ssize_t *nleaves) {
    Py_ssize_t open[MAX_DEPTH], remaining[MAX_DEPTH];
    int top = 0;
    open[0] = -1;
    remaining[0] = nodes[0].parent;
    *nleaves = 0;
    for (Py_ssize_t i = 1; i < count; i++) {
        while (top >= 0 && remaining[top] == 0) top--;
        if (top < 0) return fail(r, "schema elements beyond the root's children");
        remaining[top]--;
        Py_ssize_t children = nodes[i].parent, parent = open[top];
        int repetition = nodes[i].max_rep;
        nodes[i].parent = parent;
        nodes[i].max_def = (parent >= 0 ? nodes[parent].max_def : 0) + (repetition != REQUIRED);
        nodes[i].max_rep = (parent >= 0 ? nodes[parent].max_rep : 0) + (repetition == REPEATED);
        if (children) {
            if (top + 1 >= MAX_DEPTH) return fail(r, "schema nested too deeply");
            top++;
            open[top] = i;
            remaining[top] = children;
        } else if (nodes[i].physical < 0 || nodes[i].physical > P_FLBA ||
                   (nodes[i].physical == P_FLBA && nodes[i].type_length <= 0)) {
            char buf[160];
            return fail(r, "schema leaf '%s' without a valid type", path_text(nodes, i, buf, sizeof buf));
        } else {
            leaves[(*nleaves)++] = i;
        }
    }
    for (; top >= 0; top--)
        if (remaining[top]) return fail(r, "schema ends inside a group");
    return 0;
}

static int statistics(R *r, Node *leaf, const Where *where) {
    int width = leaf->physical == P_FLBA ? leaf->type_length
              : leaf->physical == P_INT32 || leaf->physical == P_FLOAT ? 4
              : leaf->physical == P_INT64 || leaf->physical == P_DOUBLE ? 8
              : leaf->physical == P_INT96 ? 12 : -1;
    int64_t id = 0;
    int kind;
    for (;;) {
        if (field(r, &id, &kind)) return -1;
        if (!kind) return 0;
        if (id == 1 || id == 2 || id == 5 || id == 6) {
            const uint8_t *d;
            Py_ssize_t len;
            if (kind != T_BINARY) return fail_at(r, where, "statistics field %lld of thrift type %d", (long long)id, kind);
            if (binary(r, &d, &len)) return -1;
            /* Decoding a min/max shorter than its type reads past it (or throws) in C++. */
            if ((width >= 0 && len != width) || (leaf->physical == P_BOOLEAN && len < 1))
                return fail_at(r, where, "statistics value of %zd bytes for its type", len);
        } else if (skip(r, kind, 1)) return -1;
    }
}

static int size_statistics(R *r, Node *leaf, const Where *where) {
    int64_t id = 0;
    int kind, element;
    uint64_t n;
    Py_ssize_t size;
    for (;;) {
        if (field(r, &id, &kind)) return -1;
        if (!kind) return 0;
        if ((id == 2 || id == 3) && kind == T_LIST) {
            if (list_header(r, &size, &element)) return -1;
            if (size && element != T_I64 && element != T_I32 && element != T_I16) return fail_at(r, where, "histogram of thrift type %d", element);
            for (Py_ssize_t i = 0; i < size; i++)
                if (varint(r, &n)) return -1;
            int levels = id == 2 ? leaf->max_rep : leaf->max_def;
            if (size != 0 && size != levels + 1)
                return fail_at(r, where, "level histogram of %zd entries for %d levels", size, levels + 1);
        } else if (id == 1 && kind == T_I64) {
            if (varint(r, &n)) return -1;
            if (leaf->physical != P_BYTE_ARRAY) return fail_at(r, where, "unencoded byte array size on a %s column", TYPE_NAMES[leaf->physical]);
        } else if (skip(r, kind, 1)) return -1;
    }
}

static int column_metadata(R *r, Node *nodes, Py_ssize_t leaf, const Where *where) {
    int64_t id = 0, physical = -1;
    int kind, element, have_path = 0;
    Py_ssize_t size;
    Node *node = &nodes[leaf];
    for (;;) {
        if (field(r, &id, &kind)) return -1;
        if (!kind) break;
        if (id == 1 && kind == T_I32) {
            if (zigzag(r, &physical)) return -1;
        } else if (id == 3 && kind == T_LIST) {
            if (list_header(r, &size, &element)) return -1;
            if (size && element != T_BINARY) return fail_at(r, where, "path of thrift type %d", element);
            /* Compared from the leaf up: element size-1 is the leaf's own name. */
            Py_ssize_t chain[MAX_DEPTH];
            int depth = 0;
            for (Py_ssize_t i = leaf; i >= 0 && depth < MAX_DEPTH; i = nodes[i].parent) chain[depth++] = i;
            int same = size == depth;
            for (Py_ssize_t i = 0; i < size; i++) {
                const uint8_t *d;
                Py_ssize_t len;
                if (binary(r, &d, &len)) return -1;
                if (same) {
                    Node *want = &nodes[chain[depth - 1 - i]];
                    same = len == want->name_len && memcmp(d, want->name, (size_t)len) == 0;
                }
            }
            if (!same) return fail_at(r, where, "names another path");
            have_path = 1;
        } else if (id == 12 && kind == T_STRUCT) {
            if (statistics(r, node, where)) return -1;
        } else if (id == 16 && kind == T_STRUCT) {
            if (size_statistics(r, node, where)) return -1;
        } else if (id == 17) {
            return fail_at(r, where, "has geospatial statistics");
        } else if (id == 1 || id == 3 || id == 12 || id == 16) {
            return fail_at(r, where, "field %lld of thrift type %d", (long long)id, kind);
        } else if (skip(r, kind, 1)) return -1;
    }
    if (physical != node->physical) {
        const char *name = physical >= 0 && physical <= P_FLBA ? TYPE_NAMES[physical] : "an unknown type";
        return fail_at(r, where, "is stored as %s, its column is %s", name, TYPE_NAMES[node->physical]);
    }
    if (!have_path) return fail_at(r, where, "has no path");
    return 0;
}

static int row_group(R *r, Node *nodes, Py_ssize_t *leaves, Py_ssize_t nleaves, Py_ssize_t g) {
    int64_t id = 0;
    int kind, element, seen = 0;
    Py_ssize_t size;
    Where where = {nodes, 0, g};
    for (;;) {
        if (field(r, &id, &kind)) return -1;
        if (!kind) break;
        if (id != 1 || kind != T_LIST) {
            if (skip(r, kind, 1)) return -1;
            continue;
        }
        if (list_header(r, &size, &element)) return -1;
        if (size != nleaves || element != T_STRUCT)
            return fail(r, "row group %zd has %zd column chunks for %zd columns", g, size, nleaves);
        for (Py_ssize_t c = 0; c < nleaves; c++) {
            where.leaf = leaves[c];
            int64_t cid = 0;
            int ckind, have_meta = 0;
            for (;;) {
                if (field(r, &cid, &ckind)) return -1;
                if (!ckind) break;
                if (cid == 3 && ckind == T_STRUCT) {
                    if (column_metadata(r, nodes, leaves[c], &where)) return -1;
                    have_meta = 1;
                } else if (cid == 8 || cid == 9) {
                    return fail_at(r, &where, "has encrypted metadata");
                } else if (skip(r, ckind, 1)) return -1;
            }
            if (!have_meta) return fail_at(r, &where, "has no metadata");
        }
        seen = 1;
    }
    if (!seen) return fail(r, "row group %zd without column chunks", g);
    return 0;
}

static int check(R *r) {
    int64_t id = 0;
    int kind, element;
    Py_ssize_t size, nleaves = 0, groups = 0;
    Node *nodes = NULL;
    Py_ssize_t *leaves = NULL;
    int rc = -1;
    for (;;) {
        if (field(r, &id, &kind)) goto done;
        if (!kind) break;
        if (id == 2 && kind == T_LIST) {
            if (nodes) { fail(r, "two schemas"); goto done; }
            if (list_header(r, &size, &element)) goto done;
            if (!size || element != T_STRUCT) { fail(r, "empty or malformed schema"); goto done; }
            nodes = PyMem_Calloc((size_t)size, sizeof *nodes);
            leaves = PyMem_Calloc((size_t)size, sizeof *leaves);
            if (!nodes || !leaves) { fail(r, "out of memory"); goto done; }
            for (Py_ssize_t i = 0; i < size; i++)
                if (schema_element(r, &nodes[i])) goto done;
            if (build_tree(r, nodes, size, leaves, &nleaves)) goto done;
        } else if (id == 4 && kind == T_LIST) {
            if (!nodes) { fail(r, "row groups before the schema"); goto done; }
            if (list_header(r, &size, &element)) goto done;
            if (size && element != T_STRUCT) { fail(r, "row groups of thrift type %d", element); goto done; }
            for (Py_ssize_t g = 0; g < size; g++)
                if (row_group(r, nodes, leaves, nleaves, g)) goto done;
            groups = size;
        } else if (id == 8 || id == 9) {
            fail(r, "encrypted segment footer");
            goto done;
        } else if (skip(r, kind, 0)) goto done;
    }
    if (!nodes || !groups) { fail(r, "footer without schema or row groups"); goto done; }
    rc = 0;
done:
    PyMem_Free(nodes);
    PyMem_Free(leaves);
    return rc;
}

static PyObject *problem(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    R r = {.p = view.buf, .pos = 0, .end = view.len, .failed = 0};
    int rc = check(&r);
    PyBuffer_Release(&view);
    if (rc == 0) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(r.err, (Py_ssize_t)strlen(r.err), "replace");
}

static PyMethodDef METHODS[] = {
    {"problem", problem, METH_O, "What is wrong with a serialized Parquet FileMetaData (str), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_footer_check", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__footer_check(void) { return PyModule_Create(&MODULE); }
