"""wsi.data.slide_handles: open slides reused per process and per thread, closed together, never shared."""

import multiprocessing
import pickle
import threading

import numpy as np
import pytest

from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide_handles import SlideHandles


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("handles")
    paths = []
    for k in range(3):
        path = folder / f"s{k}.tif"
        write_pyramid_from_array(path, np.full((64, 64, 3), 40 * k, dtype=np.uint8), compression="zlib")
        paths.append(path)
    return paths


def in_thread(function):
    out = []
    thread = threading.Thread(target=lambda: out.append(function()))
    thread.start()
    thread.join()
    return out[0]


def test_one_handle_per_slide_and_thread(slides):
    handles = SlideHandles()
    first = handles.get(slides[0])
    assert handles.get(str(slides[0])) is first  # a str and a Path name the same slide
    other = in_thread(lambda: handles.get(slides[0]))
    assert other is not first and len(handles) == 2
    assert other.read_region((0, 0), 0, (4, 4)).max() == 0
    handles.close()
    assert len(handles) == 0
    again = handles.get(slides[0])
    assert again is not first and again.read_region((0, 0), 0, (4, 4)).shape == (4, 4, 3)
    handles.close()


def test_capacity_closes_the_least_recently_used(slides):
    handles = SlideHandles(capacity=2)
    a, b = handles.get(slides[0]), handles.get(slides[1])
    assert handles.get(slides[0]) is a  # a is now the most recently used
    handles.get(slides[2])  # closes b
    assert len(handles) == 2 and handles.get(slides[0]) is a
    assert handles.get(slides[1]) is not b
    handles.close()
    with pytest.raises(ValueError, match="capacity"):
        SlideHandles(capacity=0)


def test_pickled_handles_travel_empty(slides):
    handles = SlideHandles(capacity=3)
    opened = handles.get(slides[0])
    copy = pickle.loads(pickle.dumps(handles))
    assert copy.capacity == 3 and len(copy) == 0 and copy.get(slides[0]) is not opened
    copy.close()
    assert opened.read_region((0, 0), 0, (2, 2)).shape == (2, 2, 3)  # the original's handle is untouched
    handles.close()


def _child(handles, path, parent_id, queue):
    slide = handles.get(path)
    queue.put((id(slide) != parent_id, len(handles)))
    handles.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_a_forked_worker_opens_its_own_and_leaves_the_parents(slides):
    handles = SlideHandles()
    parent = handles.get(slides[1])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(handles, slides[1], id(parent), queue))
    process.start()
    own, count = queue.get(timeout=60)
    process.join(60)
    assert process.exitcode == 0 and own and count == 1
    assert handles.get(slides[1]) is parent and parent.read_region((0, 0), 0, (2, 2)).max() == 40
    handles.close()
