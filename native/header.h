/* archive._native's header walk (native/header.c), registered in _native.c. */
#ifndef ARCHIVE_NATIVE_HEADER_H
#define ARCHIVE_NATIVE_HEADER_H

#include <Python.h>

PyObject *header_setup(PyObject *module, PyObject *args);
PyObject *header_walk(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
