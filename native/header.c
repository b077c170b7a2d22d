/* The element walk of archive/dicom/header.py in C.
 *
 * header_setup(wanted, short_vrs, all_vrs, max_value_length, max_held,
 *              max_sequence_length)
 *
 *   Called once by header.py: `wanted` maps each wanted tag to whether it is
 *   a sequence the index holds; the two VR sets are wire.py's, as bytes; the
 *   limits are header.py's. The walk takes them from here, so that C and
 *   Python cannot drift apart.
 *
 * header_walk(reader, data) -> str | None
 *
 *   HeaderReader._parse, line for line: walks the element headers of `data`
 *   (a fragment of the data set, any contiguous buffer) from the reader's
 *   state, gathers the wanted values into reader._values and the wanted
 *   sequences into reader._sequences, and stores the state back into the
 *   reader (its slots, by name). Returns None, or the message of the
 *   HeaderError the twin raises at the same byte (the caller raises it); the
 *   state is stored back either way, as the twin's `finally` does. The twin
 *   (HeaderReader._parse) is the reference: its docstrings explain the walk,
 *   and tests/dicom/test_header_native.py holds the two to the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"

/* PS3.5: header encodings (archive/dicom/wire.py), items and delimiters. */
#define IMPLICIT_LE 0
#define EXPLICIT_LE 1
#define EXPLICIT_BE 2
#define UNDEFINED_LENGTH 0xFFFFFFFFu
#define DELIMITER_GROUP 0xFFFEu
#define ITEM 0xE000u
#define ITEM_DELIMITATION 0xE00Du
/* Top-level Pixel Data and what its length must be (HeaderReader._pixels). */
#define PIXEL_DATA 0x7FE00010u
#define PIXELS_NATIVE 1
#define PIXELS_ENCAPSULATED 2
#define SEQUENCE_DELIMITATION 0xE0DDu
#define VR(a, b) ((unsigned)(a) << 8 | (unsigned)(b))

#define MAX_WANTED 128

static int ready;
static uint32_t wanted_tags[MAX_WANTED];
static unsigned char wanted_sequence[MAX_WANTED];
static Py_ssize_t wanted_count;
static uint32_t last_wanted;
/* One bit per two-byte VR. */
static unsigned char short_vrs[65536 / 8];
static unsigned char all_vrs[65536 / 8];
static long long max_value_length, max_held, max_sequence_length;

/* The reader's slots, by name. */
enum slot {
    S_BUF, S_VALUES, S_SEQUENCES, S_SKIP, S_WANT, S_DEPTH, S_UN_DEPTH, S_HELD, S_MODE,
    S_PENDING, S_CAPTURE, S_CAPTURE_TAG, S_DONE, S_INFLATER, S_PIXELS, SLOTS
};
static const char *const slot_names[SLOTS] = {
    "_buf", "_values", "_sequences", "_skip", "_want", "_depth", "_un_depth", "_held",
    "_mode", "_pending", "_capture", "_capture_tag", "_done", "_inflater", "_pixels",
};
static PyObject *slot_strings[SLOTS];

static int
has_vr(const unsigned char *set, unsigned vr)
{
    return (set[vr >> 3] >> (vr & 7)) & 1;
}

static int
fill_vrs(unsigned char *set, PyObject *vrs)
{
    memset(set, 0, 65536 / 8);
    PyObject *iterator = PyObject_GetIter(vrs);
    if (iterator == NULL)
        return -1;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) != 2) {
            Py_DECREF(item);
            Py_DECREF(iterator);
            PyErr_SetString(PyExc_ValueError, "a VR is two bytes");
            return -1;
        }
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(item);
        unsigned vr = VR(s[0], s[1]);
        set[vr >> 3] |= (unsigned char)(1u << (vr & 7));
        Py_DECREF(item);
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

static int
compare_tags(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

PyObject *
header_setup(PyObject *module, PyObject *args)
{
    PyObject *wanted, *short_set, *all_set;
    long long value_length, held, sequence_length;
    if (!PyArg_ParseTuple(args, "O!OOLLL", &PyDict_Type, &wanted, &short_set, &all_set,
                          &value_length, &held, &sequence_length))
        return NULL;
    /* A list of the items first: nothing run below can change what is walked. */
    PyObject *items = PyDict_Items(wanted);
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(items);
    if (count < 1 || count > MAX_WANTED) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "1 to 128 wanted tags");
        return NULL;
    }
    uint32_t pairs[MAX_WANTED][2];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        unsigned long tag = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(pair, 0));
        if (tag == (unsigned long)-1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return NULL;
        }
        int sequence = PyObject_IsTrue(PyTuple_GET_ITEM(pair, 1));
        if (sequence < 0 || tag > 0xFFFFFFFFul) {
            Py_DECREF(items);
            if (sequence >= 0)
                PyErr_SetString(PyExc_ValueError, "a tag is 32 bits");
            return NULL;
        }
        pairs[i][0] = (uint32_t)tag;
        pairs[i][1] = (uint32_t)sequence;
    }
    Py_DECREF(items);
    qsort(pairs, (size_t)count, sizeof pairs[0], compare_tags);
    static unsigned char new_short[65536 / 8], new_all[65536 / 8];
    if (fill_vrs(new_short, short_set) < 0 || fill_vrs(new_all, all_set) < 0)
        return NULL;
    for (int s = 0; s < SLOTS; s++) {
        if (slot_strings[s] == NULL) {
            slot_strings[s] = PyUnicode_InternFromString(slot_names[s]);
            if (slot_strings[s] == NULL)
                return NULL;
        }
    }
    /* Nothing can fail past here: the tables change all together or not at all. */
    memcpy(short_vrs, new_short, sizeof short_vrs);
    memcpy(all_vrs, new_all, sizeof all_vrs);
    for (Py_ssize_t i = 0; i < count; i++) {
        wanted_tags[i] = pairs[i][0];
        wanted_sequence[i] = (unsigned char)pairs[i][1];
    }
    wanted_count = count;
    last_wanted = wanted_tags[count - 1];
    max_value_length = value_length;
    max_held = held;
    max_sequence_length = sequence_length;
    ready = 1;
    Py_RETURN_NONE;
}

/* -1: not wanted; else 1 for a wanted sequence, 0 for a wanted value. */
static int
wanted_kind(uint32_t tag)
{
    Py_ssize_t low = 0, high = wanted_count - 1;
    while (low <= high) {
        Py_ssize_t middle = (low + high) / 2;
        if (wanted_tags[middle] == tag)
            return wanted_sequence[middle];
        if (wanted_tags[middle] < tag)
            low = middle + 1;
        else
            high = middle - 1;
    }
    return -1;
}

static unsigned
u16(const unsigned char *p, int big)
{
    return big ? VR(p[0], p[1]) : VR(p[1], p[0]);
}

static uint32_t
u32(const unsigned char *p, int big)
{
    if (big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The walk's state: the reader's slots while the walk runs. */
struct walk {
    PyObject *buf;       /* bytearray: a partial header or value */
    PyObject *values;    /* dict: tag -> bytes */
    PyObject *sequences; /* dict: tag -> (items' encoding, undefined length) */
    PyObject *capture;   /* bytearray of a sequence being gathered, or NULL */
    long long skip, want, depth, un_depth, held, pending, capture_tag, pixels;
    int base, done, deflated;
};

static int
append(PyObject *bytearray, const unsigned char *bytes, long long size)
{
    if (size <= 0)
        return 0;
    Py_ssize_t old = PyByteArray_GET_SIZE(bytearray);
    if (PyByteArray_Resize(bytearray, old + (Py_ssize_t)size) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(bytearray) + old, bytes, (size_t)size);
    return 0;
}

static int
set_value(PyObject *dict, long long tag, const char *bytes, Py_ssize_t size)
{
    PyObject *key = PyLong_FromLongLong(tag);
    if (key == NULL)
        return -1;
    PyObject *value = PyBytes_FromStringAndSize(bytes, size);
    if (value == NULL) {
        Py_DECREF(key);
        return -1;
    }
    int result = PyDict_SetItem(dict, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return result;
}

/* 1 if the dict holds the tag, 0 if not, -1 on error. */
static int
holds(PyObject *dict, uint32_t tag)
{
    PyObject *key = PyLong_FromUnsignedLong(tag);
    if (key == NULL)
        return -1;
    int result = PyDict_Contains(dict, key);
    Py_DECREF(key);
    return result;
}

static int
note_sequence(struct walk *w, uint32_t tag, int mode, int undefined)
{
    PyObject *key = PyLong_FromUnsignedLong(tag);
    PyObject *entry = Py_BuildValue("(iO)", mode, undefined ? Py_True : Py_False);
    int result = -1;
    if (key != NULL && entry != NULL)
        result = PyDict_SetItem(w->sequences, key, entry);
    Py_XDECREF(key);
    Py_XDECREF(entry);
    return result;
}

/* HeaderReader._gather: add part to the sequence gathered, or give it up. */
static int
gather(struct walk *w, const unsigned char *part, long long size)
{
    if (size < 0)
        size = 0;
    if (PyByteArray_GET_SIZE(w->capture) + size > max_sequence_length) {
        Py_CLEAR(w->capture);
        PyObject *key = PyLong_FromLongLong(w->capture_tag);
        if (key == NULL)
            return -1;
        int result = PyDict_DelItem(w->sequences, key);
        Py_DECREF(key);
        return result;
    }
    return append(w->capture, part, size);
}

/* HeaderReader._captured: the gathered sequence ends with this tail. */
static int
captured(struct walk *w, const unsigned char *tail, long long size)
{
    if (gather(w, tail, size) < 0)
        return -1;
    if (w->capture != NULL) {
        if (set_value(w->values, w->capture_tag, PyByteArray_AS_STRING(w->capture),
                      PyByteArray_GET_SIZE(w->capture)) < 0)
            return -1;
        Py_CLEAR(w->capture);
    }
    return 0;
}

/* Walk one fragment. 0: done or more data needed; 1: `message` holds the
 * HeaderError's message; -1: a Python exception. `*stop` is where the walk
 * stopped (past `end` when a value runs on into the next fragments), and
 * `*capture_from` where this fragment's part of a gathered sequence starts. */
static int
walk(struct walk *w, const unsigned char *data, long long end, long long *stop,
     long long *capture_from, char *message, size_t message_size)
{
    long long pos = 0;
    int mode = w->un_depth && w->depth >= w->un_depth ? IMPLICIT_LE : w->base;
    int result = 0;
    *capture_from = 0;
    while (pos < end) {
        if (w->skip) {
            if (w->skip >= end - pos) {
                w->skip -= end - pos;
                pos = end;
                goto out;
            }
            pos += w->skip;
            w->skip = 0;
        }
        if (w->want) {
            long long have = PyByteArray_GET_SIZE(w->buf);
            long long take = w->want - have < end - pos ? w->want - have : end - pos;
            if (append(w->buf, data + pos, take) < 0)
                goto fail;
            pos += take;
            if (PyByteArray_GET_SIZE(w->buf) < w->want)
                goto out;
            if (set_value(w->values, w->pending, PyByteArray_AS_STRING(w->buf),
                          PyByteArray_GET_SIZE(w->buf)) < 0 ||
                PyByteArray_Resize(w->buf, 0) < 0)
                goto fail;
            w->want = 0;
            continue;
        }

        /* An element header: in place when the fragment holds 12 bytes, else
         * gathered in buf (at most 12 bytes) across fragments. */
        const unsigned char *src;
        long long avail;
        int from_buf = 0;
        Py_ssize_t held_bytes = PyByteArray_GET_SIZE(w->buf);
        if (held_bytes || end - pos < 12) {
            long long take = 12 - held_bytes < end - pos ? 12 - held_bytes : end - pos;
            if (append(w->buf, data + pos, take) < 0)
                goto fail;
            pos += take;
            src = (const unsigned char *)PyByteArray_AS_STRING(w->buf);
            avail = PyByteArray_GET_SIZE(w->buf);
            from_buf = 1;
            if (avail < 8)
                goto out;
        }
        else {
            src = data + pos;
            avail = end - pos;
        }
        int big = mode == EXPLICIT_BE;
        unsigned group = u16(src, big), element = u16(src + 2, big);
        unsigned vr = 0; /* 0: none (Implicit VR, items and delimiters) */
        uint32_t length;
        int size = 8;
        if (mode != IMPLICIT_LE) {
            if (group == DELIMITER_GROUP) {
                length = u32(src + 4, big);
            }
            else {
                vr = VR(src[4], src[5]);
                length = u16(src + 6, big);
                if (!has_vr(short_vrs, vr)) {
                    if ((src[4] < 'A' || src[4] > 'Z' || src[5] < 'A' || src[5] > 'Z') &&
                        !w->done &&
                        (w->depth || ((uint32_t)group << 16 | element) <= last_wanted)) {
                        /* A VR not yet defined is two capitals (PS3.5 6.2). */
                        snprintf(message, message_size,
                                 "(%04X,%04X) has no VR (bytes %02X %02X) in Explicit VR",
                                 group, element, src[4], src[5]);
                        result = 1;
                        goto out;
                    }
                    if (avail < 12) {
                        if (!w->depth && ((uint32_t)group << 16 | element) > last_wanted)
                            w->done = 1;
                        goto out;
                    }
                    length = u32(src + 8, big);
                    size = 12;
                }
            }
        }
        else {
            length = u32(src + 4, 0);
            if (group == 2 && has_vr(all_vrs, VR(src[4], src[5]))) {
                /* File Meta in front of an Implicit VR data set: Explicit VR LE. */
                vr = VR(src[4], src[5]);
                length = u16(src + 6, 0);
                if (!has_vr(short_vrs, vr)) {
                    if (avail < 12)
                        goto out;
                    length = u32(src + 8, 0);
                    size = 12;
                }
            }
        }
        if (from_buf) {
            pos -= avail - size;
            if (pos < 0) { /* buf held a whole header: no walk leaves that */
                PyErr_SetString(PyExc_ValueError, "not a state a walk leaves");
                goto fail;
            }
            if (PyByteArray_Resize(w->buf, 0) < 0)
                goto fail;
        }
        else {
            pos += size;
        }

        if (!w->depth) {
            if (group == DELIMITER_GROUP) {
                if (length || (element != ITEM_DELIMITATION && element != SEQUENCE_DELIMITATION)) {
                    snprintf(message, message_size, "(FFFE,%04X) outside any sequence", element);
                    result = 1;
                    goto out;
                }
                continue;
            }
            uint32_t tag = (uint32_t)group << 16 | element;
            if (tag == PIXEL_DATA && w->pixels &&
                (length == UNDEFINED_LENGTH) != (w->pixels == PIXELS_ENCAPSULATED)) {
                snprintf(message, message_size, "%s",
                         w->pixels == PIXELS_ENCAPSULATED
                             ? "Pixel Data of defined length in an encapsulated transfer syntax"
                             : "Pixel Data of undefined length in a native transfer syntax");
                result = 1;
                goto out;
            }
            if (tag > last_wanted) {
                w->done = 1;
                if (w->deflated)
                    goto out;
            }
            int kind = wanted_kind(tag);
            if (length == UNDEFINED_LENGTH) {
                w->depth = 1;
                if (vr == VR('U', 'N')) {
                    w->un_depth = 1;
                    mode = IMPLICIT_LE;
                }
                if (!w->done && kind == 1) {
                    int held_already = holds(w->sequences, tag);
                    if (held_already < 0)
                        goto fail;
                    if (!held_already) {
                        if (note_sequence(w, tag, mode, 1) < 0)
                            goto fail;
                        Py_XSETREF(w->capture, PyByteArray_FromStringAndSize(NULL, 0));
                        if (w->capture == NULL)
                            goto fail;
                        w->capture_tag = tag;
                        *capture_from = pos;
                    }
                }
                continue;
            }
            if (w->done || kind < 0) {
                pos += length;
                continue;
            }
            if (kind == 1) {
                int held_already = 0;
                if (length <= max_sequence_length) {
                    held_already = holds(w->sequences, tag);
                    if (held_already < 0)
                        goto fail;
                }
                if (length > max_sequence_length || held_already) {
                    pos += length;
                    continue;
                }
                /* Items of an UN are Implicit VR LE, PS3.5 6.2.2. */
                if (note_sequence(w, tag, vr == VR('U', 'N') ? IMPLICIT_LE : mode, 0) < 0)
                    goto fail;
            }
            else if (vr == VR('S', 'Q')) {
                pos += length;
                continue;
            }
            else {
                if (length > max_value_length) {
                    snprintf(message, message_size, "value of (%04X,%04X) is %lu bytes long",
                             group, element, (unsigned long)length);
                    result = 1;
                    goto out;
                }
                w->held += length;
                if (w->held > max_held) {
                    snprintf(message, message_size, "header values too long in total");
                    result = 1;
                    goto out;
                }
            }
            if (end - pos >= (long long)length) {
                if (set_value(w->values, tag, (const char *)data + pos, (Py_ssize_t)length) < 0)
                    goto fail;
                pos += length;
            }
            else {
                w->pending = tag;
                w->want = length;
            }
            continue;
        }

        /* Inside a sequence: step over it, PS3.5 7.5. */
        if (group == DELIMITER_GROUP) {
            if (element == ITEM) {
                if (length == UNDEFINED_LENGTH)
                    w->depth += 1;
                else
                    pos += length;
            }
            else if (element == ITEM_DELIMITATION || element == SEQUENCE_DELIMITATION) {
                w->depth -= 1;
                if (w->un_depth > w->depth) {
                    w->un_depth = 0;
                    mode = w->base;
                }
                if (!w->depth && w->capture != NULL) {
                    if (captured(w, data + *capture_from, pos - *capture_from) < 0)
                        goto fail;
                }
            }
            else if (length == UNDEFINED_LENGTH) {
                snprintf(message, message_size, "(FFFE,%04X) of undefined length", element);
                result = 1;
                goto out;
            }
            else {
                pos += length;
            }
        }
        else if (length == UNDEFINED_LENGTH) {
            w->depth += 1;
            if (vr == VR('U', 'N') && !w->un_depth) {
                w->un_depth = w->depth;
                mode = IMPLICIT_LE;
            }
        }
        else {
            pos += length;
        }
    }
    if (pos > end) /* a value skipped runs on into the next fragments */
        w->skip = pos - end;
out:
    *stop = pos;
    return result;
fail:
    *stop = pos;
    return -1;
}

static int
load_long(PyObject *reader, enum slot s, long long *into)
{
    PyObject *value = PyObject_GetAttr(reader, slot_strings[s]);
    if (value == NULL)
        return -1;
    *into = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return *into == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
store_long(PyObject *reader, enum slot s, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL)
        return -1;
    int result = PyObject_SetAttr(reader, slot_strings[s], number);
    Py_DECREF(number);
    return result;
}

static PyObject *
load_object(PyObject *reader, enum slot s)
{
    return PyObject_GetAttr(reader, slot_strings[s]);
}

/* The reader's state into `w`; refused unless it is one a walk can leave (the
 * walk trusts it: a header is read from buf, a value gathered up to want). */
static int
load(PyObject *reader, struct walk *w)
{
    long long mode;
    if ((w->buf = load_object(reader, S_BUF)) == NULL ||
        (w->values = load_object(reader, S_VALUES)) == NULL ||
        (w->sequences = load_object(reader, S_SEQUENCES)) == NULL ||
        (w->capture = load_object(reader, S_CAPTURE)) == NULL)
        return -1;
    if (!PyByteArray_CheckExact(w->buf) || !PyDict_CheckExact(w->values) ||
        !PyDict_CheckExact(w->sequences) ||
        (w->capture != Py_None && !PyByteArray_CheckExact(w->capture))) {
        PyErr_SetString(PyExc_TypeError, "not a HeaderReader");
        return -1;
    }
    if (w->capture == Py_None)
        Py_CLEAR(w->capture);
    if (load_long(reader, S_SKIP, &w->skip) < 0 || load_long(reader, S_WANT, &w->want) < 0 ||
        load_long(reader, S_DEPTH, &w->depth) < 0 ||
        load_long(reader, S_UN_DEPTH, &w->un_depth) < 0 ||
        load_long(reader, S_HELD, &w->held) < 0 || load_long(reader, S_MODE, &mode) < 0 ||
        load_long(reader, S_PENDING, &w->pending) < 0 ||
        load_long(reader, S_CAPTURE_TAG, &w->capture_tag) < 0 ||
        load_long(reader, S_PIXELS, &w->pixels) < 0)
        return -1;
    Py_ssize_t buffered = PyByteArray_GET_SIZE(w->buf);
    if (mode < IMPLICIT_LE || mode > EXPLICIT_BE || w->skip < 0 || w->want < 0 ||
        w->depth < 0 || w->un_depth < 0 || w->held < 0 ||
        (w->want ? buffered >= w->want : buffered >= 12)) {
        PyErr_SetString(PyExc_ValueError, "not a state a walk leaves");
        return -1;
    }
    w->base = (int)mode;
    PyObject *done = load_object(reader, S_DONE);
    if (done == NULL)
        return -1;
    w->done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (w->done < 0)
        return -1;
    PyObject *inflater = load_object(reader, S_INFLATER);
    if (inflater == NULL)
        return -1;
    w->deflated = inflater != Py_None;
    Py_DECREF(inflater);
    return 0;
}

static int
store(PyObject *reader, struct walk *w)
{
    PyObject *capture = w->capture != NULL ? w->capture : Py_None;
    if (store_long(reader, S_SKIP, w->skip) < 0 || store_long(reader, S_WANT, w->want) < 0 ||
        store_long(reader, S_DEPTH, w->depth) < 0 ||
        store_long(reader, S_UN_DEPTH, w->un_depth) < 0 ||
        store_long(reader, S_HELD, w->held) < 0 ||
        store_long(reader, S_PENDING, w->pending) < 0 ||
        store_long(reader, S_CAPTURE_TAG, w->capture_tag) < 0 ||
        PyObject_SetAttr(reader, slot_strings[S_CAPTURE], capture) < 0)
        return -1;
    if (w->done && PyObject_SetAttr(reader, slot_strings[S_DONE], Py_True) < 0)
        return -1;
    return 0;
}

PyObject *
header_walk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "header_walk(reader, data)");
        return NULL;
    }
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "header_setup() was not called");
        return NULL;
    }
    PyObject *reader = args[0];
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    struct walk w = {0};
    PyObject *result = NULL;
    if (load(reader, &w) < 0)
        goto done;
    char message[96];
    long long stop = 0, capture_from = 0;
    const unsigned char *data = (const unsigned char *)view.buf;
    long long end = (long long)view.len;
    int outcome = walk(&w, data, end, &stop, &capture_from, message, sizeof message);
    /* The twin's `finally`: the part of a sequence still being gathered, the state. */
    if (w.capture != NULL && outcome >= 0) {
        long long upto = stop < end ? stop : end;
        if (gather(&w, data + capture_from, upto - capture_from) < 0)
            outcome = -1;
    }
    if (outcome < 0) {
        /* The state is stored all the same (the next call checks it), and the
         * exception that stopped the walk is the one raised. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (store(reader, &w) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, traceback);
        goto done;
    }
    if (store(reader, &w) < 0)
        goto done;
    if (outcome == 1)
        result = PyUnicode_FromString(message);
    else
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(w.buf);
    Py_XDECREF(w.values);
    Py_XDECREF(w.sequences);
    Py_XDECREF(w.capture);
    PyBuffer_Release(&view);
    return result;
}
