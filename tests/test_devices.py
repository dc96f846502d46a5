"""CPU counting and the process-wide torch thread setting."""

from __future__ import annotations

import os
import threading

import torch

from geoseg.devices import available_cpus, torch_threads


def test_available_cpus_respects_the_affinity_mask() -> None:
    n = available_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


def _count_in_new_thread() -> int:
    """The thread count a fresh thread (a new scheduler worker) starts with."""
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(torch.get_num_threads()))
    t.start()
    t.join()
    return out[0]


def test_torch_threads_restores_the_count_after_overlapping_users() -> None:
    """Two tasks overlap: A enters, B enters, A leaves, B leaves. B keeps the setting
    while it runs, and afterwards threads get the count from before both."""
    before = _count_in_new_thread()
    target = before + 1
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen_by_b: list[int] = []

    def task_a() -> None:
        with torch_threads(target):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def task_b() -> None:
        a_in.wait(10)
        with torch_threads(target):
            b_in.set()
            a_out.wait(10)
            seen_by_b.append(torch.get_num_threads())

    threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen_by_b == [target]
    assert _count_in_new_thread() == before
