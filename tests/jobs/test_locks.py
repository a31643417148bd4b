"""The per-VM lock in Redis: held for as long as its job runs, however long that is, and no longer."""

from __future__ import annotations

import threading
import time

from jobs import context


def test_a_lock_held_longer_than_its_expiry_stays_held(app, queues) -> None:
    app.config["VM_LOCK_SECONDS"] = 0.6  # refreshed every 0.2 s by the holder's refresher thread
    other = queues.lock("lifeboat:vm:7", timeout=5, thread_local=False)
    with context.vm_lock(7):
        time.sleep(2.0)  # more than three expiries: only the refresher keeps it
        assert not other.acquire(blocking=False)  # still held by this job
    assert other.acquire(blocking=False)  # released at the end
    other.release()


def test_a_second_job_of_the_same_vm_waits_and_says_so(app, queues) -> None:
    app.config["VM_LOCK_SECONDS"] = 5
    order: list[str] = []
    waited = threading.Event()

    def second() -> None:
        with app.app_context(), context.vm_lock(8, on_wait=waited.set):
            order.append("second")

    with context.vm_lock(8):
        thread = threading.Thread(target=second)
        thread.start()
        assert waited.wait(10)  # it found the VM busy
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
    assert queues.lock("lifeboat:vm:9", timeout=1).acquire(blocking=False)  # other VMs never wait
