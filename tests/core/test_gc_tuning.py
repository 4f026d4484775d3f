import gc
from collections.abc import Iterator

import pytest

from app.core.gc_tuning import YOUNG_THRESHOLD, tune_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_are_frozen_and_young_collections_rarer() -> None:
    _, middle, oldest = gc.get_threshold()
    tune_for_serving()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, oldest)
    assert gc.get_freeze_count() > 1000  # the modules' objects, at least


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_after_startup_is_still_collected() -> None:
    tune_for_serving()

    collected: list[int] = []

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            collected.append(1)

    for _ in range(YOUNG_THRESHOLD * 3):
        Node()
    assert collected  # the collector ran by itself and freed cycles
