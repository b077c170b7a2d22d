"""The C extension archive._native (native/): everything else is in pyproject.toml.

Optional on purpose: without a C compiler or Python's headers the build goes on
without it, and the pure-Python twins (archive/store/place.py, archive/store/scan.py,
archive/dicom/header.py) do the same work; archive/native.py picks.
``.ci/run`` installs both, and the tests fail under CI=true if it is missing.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "archive._native",
            sources=["native/_native.c", "native/header.c"],
            depends=["native/header.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
