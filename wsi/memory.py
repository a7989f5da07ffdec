"""Sizes checked against what can be allocated, before the work: one line instead of a ``MemoryError``.

A mistyped size (``--size 100000000 100000000``, ``--dpi 100000``) asks for more memory than the machine has;
the library or the operating system would fail deep inside a write with a traceback (``MemoryError``,
``std::bad_alloc``), be killed by the kernel, or swap for an hour. :func:`check_allocation` compares an estimate
with the memory available now (Linux's ``MemAvailable``; elsewhere the physical memory) first.
"""

import os

from wsi.errors import ParameterError


def physical_memory():
    """Bytes of physical memory of this machine (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def available_memory():
    """Bytes of memory available to a new allocation now (``MemAvailable``), else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def _gib(nbytes):
    return f"{nbytes / 2 ** 30:.3g} GiB"


def check_allocation(nbytes, what):
    """Raise :class:`~wsi.errors.InputError` when ``nbytes`` exceed the memory available now.

    ``what`` says what needs them and from which parameter, as a :class:`~wsi.errors.ParameterError` template
    (parameter names in braces, e.g. ``"{dpi} 100000: a figure of 900000x800000 pixels"``), so that the scripts
    name their options and library callers the parameters.
    """
    total = available_memory()
    if total is not None and nbytes > total:
        raise ParameterError(f"{what} needs {_gib(nbytes)} of memory; {_gib(total)} is available")
