"""Long operations: progress, cancel, success and failure as a sentence (ui/common/background.py)."""

from __future__ import annotations

import asyncio
import time

from app.progress import Cancelled, Progress
from ui.common.background import BackgroundOp, failure_sentence


def test_progress_reports_and_cancels():
    seen = []
    p = Progress(lambda done, total, text: seen.append((done, total, text)))
    assert p.report(1, 3, "first")
    p.cancel()
    assert not p.report(2, 3)
    assert seen == [(1, 3, "first"), (2, 3, "first")]
    try:
        p.check()
    except Cancelled:
        pass
    else:
        raise AssertionError("check() did not raise after cancel")
    assert p.wait(5) is True  # returns at once once cancelled


def test_thread_work_succeeds_with_progress(qtbot):
    def work(progress):
        for i in range(5):
            progress.report(i + 1, 5, f"step {i + 1}")
            time.sleep(0.01)
        return "done"

    op = BackgroundOp(None, work, title="Counting")
    with qtbot.waitSignal(op.succeeded, timeout=5000) as blocker:
        op.start()
    assert blocker.args == ["done"] and op.state == "ok" and op.result == "done"
    assert op.progress.done == 5 and op.progress.text == "step 5"


def test_failure_is_a_sentence_and_the_traceback_goes_to_the_log(qtbot, caplog):
    def work(progress):
        raise KeyError("boom")

    failures = []
    op = BackgroundOp(None, work, title="Reading the file", on_failure=failures.append, failure_box=False)
    with qtbot.waitSignal(op.failed, timeout=5000):
        op.start()
    expected = "Reading the file failed (KeyError: 'boom'). The details are in the log file; please report it."
    assert failures == [expected]
    assert "Traceback" not in failures[0]
    assert any(r.exc_info for r in caplog.records)  # the traceback is logged, not shown


def test_console_errors_and_os_errors_read_as_they_are():
    from app.mqtt.errors import SessionError

    assert failure_sentence(SessionError("The broker refused it."), "Testing") == "The broker refused it."
    err = FileNotFoundError(2, "No such file or directory", "/nope/ca.pem")
    assert failure_sentence(err, "Importing") == "Importing failed: No such file or directory (/nope/ca.pem)."


def test_cancel_stops_thread_work(qtbot):
    def work(progress):
        while not progress.wait(0.01):
            progress.report(0)
        progress.check()

    op = BackgroundOp(None, work, title="Waiting")
    op.start()
    qtbot.wait(50)
    with qtbot.waitSignal(op.cancelled, timeout=5000):
        op.cancel()
    assert op.state == "cancelled"


def test_coroutine_work_runs_on_the_gui_loop_and_cancels(qtbot, loop):
    async def work(progress):
        progress.report(1, 2, "half")
        await asyncio.sleep(0.05)
        return 42

    async def forever(progress):
        await asyncio.sleep(60)

    async def scenario():
        ok = BackgroundOp(None, work, title="Testing")
        ok.start()
        while ok.running:
            await asyncio.sleep(0.01)
        assert ok.state == "ok" and ok.result == 42
        stuck = BackgroundOp(None, forever, title="Testing")
        stuck.start()
        await asyncio.sleep(0.05)
        stuck.cancel()
        while stuck.running:
            await asyncio.sleep(0.01)
        assert stuck.state == "cancelled"

    loop.run_until_complete(scenario())
