"""Open slides kept for reuse, per process and per thread: the one slide-handle cache of the pipeline.

Every reader that comes back to the same slides many times keeps its handles open: patch_gen's worker
processes, the training dataset that reads grids from the slides, the faithful mode's dataset, the fast mode's
block-reading threads and the preflight check's decoding threads. Two rules hold for all of them, and live here:

- an OpenSlide handle belongs to one process: a DataLoader or pool worker forked from a process that had slides
  open does not use (or close) its parent's handles, it opens its own; pickled (spawned workers), the cache
  travels empty;
- a handle is used by one thread at a time: each thread has its own handles (OpenSlide decodes with the GIL
  released, so threads reading one slide through one handle would serialise or worse).

``capacity`` bounds the slides each thread keeps open (least recently used closed first); None keeps all.
"""

import collections
import os
import threading

from wsi.data.slide import open_slide


class SlideHandles:
    """A cache of open :class:`~wsi.data.slide.Slide` handles for this process, one set per thread.

    ``get(path)`` returns this thread's handle of ``path``, opening it on first use; ``close()`` closes every
    handle this process opened (in any thread), after which ``get`` opens again.
    """

    def __init__(self, capacity=None):
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 or None, got {capacity}")
        self.capacity = capacity
        self._reset()

    def _reset(self):
        self._pid = os.getpid()
        self._local = threading.local()  # .slides: OrderedDict path -> Slide, least recently used first
        self._lock = threading.Lock()
        self._opened = []  # every handle of this process, for close()

    def get(self, path):
        """This thread's open slide of ``path`` (a str or Path), opened now if needed."""
        if self._pid != os.getpid():  # forked: the handles are the parent's
            self._reset()
        slides = getattr(self._local, "slides", None)
        if slides is None:
            slides = self._local.slides = collections.OrderedDict()
        key = os.fspath(path)
        slide = slides.pop(key, None)
        if slide is None:
            slide = open_slide(path)
            while self.capacity is not None and len(slides) >= self.capacity:
                self._forget(slides.popitem(last=False)[1]).close()
            with self._lock:
                self._opened.append(slide)
        slides[key] = slide
        return slide

    def _forget(self, slide):
        with self._lock:
            self._opened = [s for s in self._opened if s is not slide]
        return slide

    def __len__(self):
        """Handles open in this process (all threads)."""
        return len(self._opened) if self._pid == os.getpid() else 0

    def close(self):
        """Close the handles this process opened, in every thread; the cache starts empty again."""
        if self._pid != os.getpid():
            self._reset()
            return
        with self._lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for slide in opened:
            slide.close()

    def __getstate__(self):
        return {"capacity": self.capacity}  # handles do not pickle: a spawned worker opens its own

    def __setstate__(self, state):
        self.capacity = state["capacity"]
        self._reset()


__all__ = ["SlideHandles"]
