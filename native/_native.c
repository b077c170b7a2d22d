/* archive._native: hot paths of archive-node in C.
 *
 * write_and_link(fd, path, chunks, final, folders, advise_from=-1) -> bool
 *
 *   The last trip of an instance file, in one call that gives up the GIL once:
 *   open `path` (O_CREAT | O_EXCL, when fd < 0), write every chunk, start the
 *   writeback of what lies from offset `advise_from` on (POSIX_FADV_DONTNEED on
 *   dirty pages; when it is >= 0; advice, so its error is ignored), make each
 *   of `folders` (in order; one that exists is fine), link `path` to `final`,
 *   and close the descriptor. Returns True when linked, False when `final`
 *   exists already (nothing linked). The descriptor is closed whatever happens.
 *
 *   Errors are the OSError the same os calls raise: os.open's and os.mkdir's
 *   name the path, os.link's both paths, os.writev's none. Paths are what os
 *   takes (str, bytes, path-like; a NUL inside is a ValueError), chunks
 *   contiguous buffers (else TypeError or BufferError); such arguments are
 *   refused before anything is opened or written, in the order path, final,
 *   folders, chunks.
 *
 * Its pure-Python twin, archive/store/place.py, gives identical results; the
 * tests hold both to that (tests/store/test_place.py).
 *
 * read_cached(fd, offset, size): see below; twin in archive/store/scan.py (the
 * same results; only the C function also spares a miss its readahead).
 *
 * open_cached(path): see below; twin in archive/store/scan.py (the same system
 * call through ctypes).
 *
 * header_setup(...), header_walk(reader, data): in header.c; twin
 * HeaderReader._parse in archive/dicom/header.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "header.h"

/* cachestat(2), Linux 6.5+; older C libraries lack the number and the structs.
 * 451 on the 64-bit ABIs named here (not x32, whose numbers differ). */
#if defined(__linux__) && !defined(__NR_cachestat) &&                              \
    ((defined(__x86_64__) && !defined(__ILP32__)) || defined(__aarch64__))
#define __NR_cachestat 451
#endif
#if defined(__linux__) && defined(__NR_cachestat) && defined(RWF_NOWAIT)
#define ARCHIVE_CACHESTAT 1
#endif

/* openat2(2), Linux 5.6+ (RESOLVE_CACHED 5.12+); 437 on the 64-bit ABIs named
 * here. The struct and flag are spelled out: older C libraries lack them. */
#if defined(__linux__) && !defined(__NR_openat2) &&                                \
    ((defined(__x86_64__) && !defined(__ILP32__)) || defined(__aarch64__))
#define __NR_openat2 437
#endif
/* Only where the Python twin (archive/store/scan.py) knows the number too, so
 * that the two give the same results everywhere. */
#if defined(__linux__) && defined(__NR_openat2) &&                                 \
    ((defined(__x86_64__) && !defined(__ILP32__)) || defined(__aarch64__))
#define ARCHIVE_OPENAT2 1
#endif

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

enum step { STEP_NONE, STEP_OPEN, STEP_WRITE, STEP_MKDIR, STEP_LINK };

/* Write every iovec, resuming after short writes and EINTR. */
static int
write_all(int fd, struct iovec *iov, Py_ssize_t count)
{
    Py_ssize_t first = 0;
    while (first < count) {
        if (iov[first].iov_len == 0) {
            first++;
            continue;
        }
        int batch = (int)((count - first) < IOV_MAX ? (count - first) : IOV_MAX);
        ssize_t written = writev(fd, iov + first, batch);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        while (written > 0 && first < count) {
            if ((size_t)written >= iov[first].iov_len) {
                written -= (ssize_t)iov[first].iov_len;
                iov[first].iov_len = 0;
                first++;
            }
            else {
                iov[first].iov_base = (char *)iov[first].iov_base + written;
                iov[first].iov_len -= (size_t)written;
                written = 0;
            }
        }
    }
    return 0;
}

static PyObject *
write_and_link(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd = -1;
    long long advise_from = -1;
    PyObject *path, *chunks, *final, *folders;
    if (!PyArg_ParseTuple(args, "iOOOO|L:write_and_link", &fd, &path, &chunks, &final,
                          &folders, &advise_from)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }

    PyObject *result = NULL;
    PyObject *path_b = NULL, *final_b = NULL, *chunk_seq = NULL, *folder_tuple = NULL;
    PyObject **folder_b = NULL;
    const char **folder_c = NULL;
    Py_buffer *views = NULL;
    struct iovec *iov = NULL;
    Py_ssize_t nchunks = 0, nviews = 0, nfolders = 0, nfolder_b = 0;

    /* The order of the checks is the twin's: path, final, folders, chunks. The
     * converter is os's own (str, bytes or path-like; no NUL inside). */
    if (!PyUnicode_FSConverter(path, &path_b))
        goto done;
    if (!PyUnicode_FSConverter(final, &final_b))
        goto done;
    /* A tuple: the folder named in an error is read after the GIL is retaken. */
    folder_tuple = PySequence_Tuple(folders);
    if (folder_tuple == NULL)
        goto done;
    nfolders = PyTuple_GET_SIZE(folder_tuple);
    folder_b = PyMem_Calloc(nfolders ? (size_t)nfolders : 1, sizeof(PyObject *));
    folder_c = PyMem_Calloc(nfolders ? (size_t)nfolders : 1, sizeof(const char *));
    if (folder_b == NULL || folder_c == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; nfolder_b < nfolders; nfolder_b++) {
        if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(folder_tuple, nfolder_b),
                                   &folder_b[nfolder_b]))
            goto done;
        folder_c[nfolder_b] = PyBytes_AS_STRING(folder_b[nfolder_b]);
    }
    chunk_seq = PySequence_Fast(chunks, "chunks must be a sequence of buffers");
    if (chunk_seq == NULL)
        goto done;
    nchunks = PySequence_Fast_GET_SIZE(chunk_seq);
    views = PyMem_Calloc(nchunks ? (size_t)nchunks : 1, sizeof(Py_buffer));
    iov = PyMem_Calloc(nchunks ? (size_t)nchunks : 1, sizeof(struct iovec));
    if (views == NULL || iov == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Each view holds its object: the list may change once the GIL is released. */
    for (; nviews < nchunks; nviews++) {
        PyObject *chunk = PySequence_Fast_GET_ITEM(chunk_seq, nviews);
        if (PyObject_GetBuffer(chunk, &views[nviews], PyBUF_SIMPLE) < 0)
            goto done;
        iov[nviews].iov_base = views[nviews].buf;
        iov[nviews].iov_len = (size_t)views[nviews].len;
    }

    enum step failed = STEP_NONE;
    int error = 0, linked = 0;
    Py_ssize_t failed_folder = -1;
    const char *path_c = PyBytes_AS_STRING(path_b);
    const char *final_c = PyBytes_AS_STRING(final_b);

    Py_BEGIN_ALLOW_THREADS
    if (fd < 0) {
        do {
            fd = open(path_c, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            error = errno;
            failed = STEP_OPEN;
        }
    }
    if (failed == STEP_NONE) {
        error = write_all(fd, iov, nchunks);
        if (error)
            failed = STEP_WRITE;
        else if (advise_from >= 0)
            (void)posix_fadvise(fd, (off_t)advise_from, 0, POSIX_FADV_DONTNEED);
    }
    for (Py_ssize_t i = 0; failed == STEP_NONE && i < nfolders; i++) {
        if (mkdir(folder_c[i], 0755) != 0 && errno != EEXIST) {
            error = errno;
            failed = STEP_MKDIR;
            failed_folder = i;
        }
    }
    if (failed == STEP_NONE) {
        if (link(path_c, final_c) == 0)
            linked = 1;
        else if (errno != EEXIST) {
            error = errno;
            failed = STEP_LINK;
        }
    }
    if (fd >= 0)
        close(fd); /* as os.close would, but its error is not ours to report */
    fd = -1;
    Py_END_ALLOW_THREADS

    errno = error;
    switch (failed) {
    case STEP_NONE:
        result = linked ? Py_True : Py_False;
        Py_INCREF(result);
        break;
    case STEP_OPEN:
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        break;
    case STEP_WRITE:
        PyErr_SetFromErrno(PyExc_OSError);
        break;
    case STEP_MKDIR:
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError,
                                             PyTuple_GET_ITEM(folder_tuple, failed_folder));
        break;
    case STEP_LINK:
        PyErr_SetFromErrnoWithFilenameObjects(PyExc_OSError, path, final);
        break;
    }

done:
    if (fd >= 0)
        close(fd); /* an argument was refused before anything was written */
    for (Py_ssize_t i = 0; i < nviews; i++)
        PyBuffer_Release(&views[i]);
    for (Py_ssize_t i = 0; i < nfolder_b; i++)
        Py_XDECREF(folder_b[i]);
    PyMem_Free(views);
    PyMem_Free(iov);
    PyMem_Free(folder_b);
    PyMem_Free(folder_c);
    Py_XDECREF(chunk_seq);
    Py_XDECREF(folder_tuple);
    Py_XDECREF(path_b);
    Py_XDECREF(final_b);
    return result;
}

#ifdef ARCHIVE_CACHESTAT
struct archive_cachestat_range {
    uint64_t off;
    uint64_t len;
};

struct archive_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

/* Set once cachestat answered ENOSYS (kernel before 6.5): not asked again. */
static int cachestat_missing = 0;

/* 0 if some page of [offset, offset + size) is known not to be in the page
 * cache; 1 otherwise (all there, or cachestat cannot tell). Never reads. */
static int
maybe_all_cached(int fd, long long offset, Py_ssize_t size)
{
    if (cachestat_missing)
        return 1;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return 1;
    struct archive_cachestat_range range = {(uint64_t)offset, (uint64_t)size};
    struct archive_cachestat stat = {0, 0, 0, 0, 0};
    if (syscall(__NR_cachestat, fd, &range, &stat, 0) != 0) {
        if (errno == ENOSYS)
            cachestat_missing = 1;
        return 1; /* EPERM, EBADF, ...: preadv2 decides */
    }
    uint64_t first = (uint64_t)offset / (uint64_t)page;
    uint64_t last = ((uint64_t)offset + (uint64_t)size - 1) / (uint64_t)page;
    return stat.nr_cache >= last - first + 1;
}
#endif

/* read_cached(fd, offset, size) -> bytes | None
 *
 *   The `size` bytes at `offset`, if the page cache holds them all: preadv2 with
 *   RWF_NOWAIT, which never waits for the disk. None when it would have (EAGAIN),
 *   when only part was cached, or on any error: the caller then reads in the
 *   I/O pool, where an error is reported. The bytes object is filled in place
 *   (no zeroed buffer first), with the GIL released during the copy.
 *
 *   Where cachestat(2) exists (Linux 6.5+), it is asked first: a preadv2 that
 *   misses still starts the readahead of what it lacks, in the caller's thread
 *   (0.1-0.2 ms for 0.5 MB here, page allocation included), and the caller is
 *   the event loop. Same results as without it; the readahead is left to the
 *   blocking read that follows, in the pool. Where cachestat is refused (EPERM:
 *   a file the process does not own and cannot write, or a seccomp profile
 *   older than the call) each read pays that failed call and preadv2 decides,
 *   as without it; ENOSYS is remembered.
 */
static PyObject *
read_cached(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    long long offset;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iLn:read_cached", &fd, &offset, &size))
        return NULL;
    if (size < 0 || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset or size");
        return NULL;
    }
    if (size == 0)
        return PyBytes_FromStringAndSize(NULL, 0); /* nothing to wait for */
#ifdef RWF_NOWAIT
#ifdef ARCHIVE_CACHESTAT
    if (!maybe_all_cached(fd, offset, size))
        Py_RETURN_NONE;
#endif
    PyObject *block = PyBytes_FromStringAndSize(NULL, size);
    if (block == NULL)
        return NULL;
    struct iovec iov = {PyBytes_AS_STRING(block), (size_t)size};
    ssize_t got;
    Py_BEGIN_ALLOW_THREADS
    do {
        got = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    } while (got < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    if (got != size) {
        Py_DECREF(block);
        Py_RETURN_NONE;
    }
    return block;
#else
    Py_RETURN_NONE;
#endif
}

#ifdef ARCHIVE_OPENAT2
struct archive_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#define ARCHIVE_RESOLVE_CACHED 0x20
/* Set once openat2 or RESOLVE_CACHED proved missing or forbidden: not asked again. */
static int openat2_missing = 0;
#endif

/* open_cached(path) -> int
 *
 *   The file at `path` opened read-only (O_CLOEXEC; O_NONBLOCK, which regular
 *   files ignore, so that a FIFO put in a file's place opens at once and then
 *   fails to read instead of blocking the loop), if that needs no disk I/O:
 *   openat2 with RESOLVE_CACHED, which fails with EAGAIN instead of reading a
 *   directory or inode the caches lack. The descriptor, or -1: when the open
 *   would have waited, on any error (the caller then opens in its I/O pool,
 *   which reports it), and where openat2 or the flag is missing or refused
 *   (ENOSYS, EINVAL before Linux 5.12, EPERM from a seccomp profile: then
 *   remembered). Called on the event loop; it never waits for the disk.
 */
static PyObject *
open_cached(PyObject *Py_UNUSED(module), PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    long fd = -1;
#ifdef ARCHIVE_OPENAT2
    if (!openat2_missing) {
        struct archive_open_how how = {(uint64_t)(O_RDONLY | O_CLOEXEC | O_NONBLOCK), 0,
                                       ARCHIVE_RESOLVE_CACHED};
        long got;
        do {
            got = syscall(__NR_openat2, AT_FDCWD, PyBytes_AS_STRING(path), &how,
                          sizeof how);
        } while (got < 0 && errno == EINTR);
        if (got >= 0)
            fd = got;
        else if (errno == ENOSYS || errno == EINVAL || errno == EPERM || errno == E2BIG)
            openat2_missing = 1;
    }
#endif
    Py_DECREF(path);
    PyObject *result = PyLong_FromLong(fd);
    if (result == NULL && fd >= 0)
        close((int)fd);
    return result;
}

static PyMethodDef native_methods[] = {
    {"write_and_link", write_and_link, METH_VARARGS,
     "write_and_link(fd, path, chunks, final, folders, advise_from=-1) -> bool\n\n"
     "Open path (when fd < 0), write the chunks, start the writeback of what lies\n"
     "from advise_from on (when >= 0), make the folders, link path to\n"
     "final and close, with the GIL released once. False if final exists."},
    {"read_cached", read_cached, METH_VARARGS,
     "read_cached(fd, offset, size) -> bytes | None\n\n"
     "The bytes at offset if the page cache holds them all (RWF_NOWAIT), else None."},
    {"open_cached", open_cached, METH_O,
     "open_cached(path) -> int\n\n"
     "The file opened read-only if that needs no disk I/O (RESOLVE_CACHED), else -1."},
    {"header_setup", header_setup, METH_VARARGS,
     "header_setup(wanted, short_vrs, all_vrs, max_value_length, max_held,\n"
     "             max_sequence_length) -> None\n\n"
     "The wanted tags (tag -> is a sequence), VR sets and limits header_walk uses."},
    {"header_walk", (PyCFunction)(void (*)(void))header_walk, METH_FASTCALL,
     "header_walk(reader, data) -> str | None\n\n"
     "HeaderReader._parse in C: walk data from the reader's state; the message of\n"
     "the HeaderError to raise, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "archive._native",
    .m_doc = "Hot paths of archive-node in C; pure-Python twins give identical results.",
    .m_size = 0,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&native_module);
}
