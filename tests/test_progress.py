"""Progress lines: stage, rows done, rate, ETA; one updating line on a TTY, log lines otherwise."""

from __future__ import annotations

import io
import logging

from etl import progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_line_states_done_total_rate_and_eta():
    assert progress.format_line("export", 250, 1000, 10.0) == "export: 250/1,000 rows (25%) 25.0 rows/s, ETA 0:00:30"


def test_format_line_without_total_shows_rate_and_elapsed():
    assert progress.format_line("dedup", 40, None, 8.0, "tasks") == "dedup: 40 tasks 5.0 tasks/s, elapsed 0:00:08"


def test_format_duration_unknown_and_hours():
    assert (progress.format_duration(None), progress.format_duration(3725)) == ("?", "1:02:05")


def test_tty_rewrites_one_line_and_ends_it():
    stream, clock = io.StringIO(), FakeClock()
    with progress.Tracker("export", 100, stream=stream, clock=clock, tty=True) as t:
        clock.now += 2
        t.update(50)
        clock.now += 2
        t.update(50)
    assert stream.getvalue() == ("\r\x1b[Kexport: 50/100 rows (50%) 25.0 rows/s, ETA 0:00:02"
                                 "\r\x1b[Kexport: 100/100 rows (100%) 25.0 rows/s, ETA 0:00:00"
                                 "\r\x1b[Kexport: 100/100 rows (100%) 25.0 rows/s, ETA 0:00:00\n")


def test_non_tty_logs_at_most_once_per_interval(caplog):
    stream, clock = io.StringIO(), FakeClock()
    t = progress.Tracker("upload", 10, unit="objects", stream=stream, clock=clock, tty=False, interval=30)
    with caplog.at_level(logging.INFO, logger="etl.progress"):
        for _ in range(10):
            clock.now += 5
            t.update(1)
        t.close()
    assert stream.getvalue() == ""
    assert [r.getMessage() for r in caplog.records] == [
        "progress upload: 6/10 objects (60%) 0.2 objects/s, ETA 0:00:20"]


def test_progress_off_by_env(monkeypatch):
    monkeypatch.setenv("ETL_PROGRESS", "0")
    stream, clock = io.StringIO(), FakeClock()
    t = progress.Tracker("x", 1, stream=stream, clock=clock, tty=True)
    clock.now += 5
    t.update(1)
    t.close()
    assert stream.getvalue() == ""


class FakeStage:
    def __init__(self, done, total):
        self.numCompletedTasks, self.numTasks = done, total


class FakeStatus:
    """A status tracker whose active stages change between polls."""

    def __init__(self, timeline):
        self.timeline = timeline

    def getActiveStageIds(self):
        return list(self.timeline[0])

    def getStageInfo(self, stage_id):
        return FakeStage(*self.timeline[0][stage_id])


def test_spark_poller_counts_tasks_of_finished_and_running_stages():
    status = FakeStatus([{1: (2, 8)}])
    poller = progress.SparkPoller(status, "dedup", stream=io.StringIO())
    poller.poll()
    assert (poller.view.done, poller.view.total) == (2, 8)
    status.timeline[0] = {2: (1, 4)}  # stage 1 finished (8 tasks), stage 2 running
    poller.poll()
    assert (poller.view.done, poller.view.total) == (9, 12)


def test_no_status_tracker_without_a_spark_context():
    class ConnectLike:
        @property
        def sparkContext(self):
            raise RuntimeError("[JVM_ATTRIBUTE_NOT_SUPPORTED] sparkContext is not supported in Spark Connect")

    assert progress.status_tracker(ConnectLike()) is None
    with progress.stage_progress(ConnectLike(), "ingest") as poller:
        assert poller is None


def test_log_record_on_a_terminal_first_erases_the_progress_line():
    stream, clock = io.StringIO(), FakeClock()
    view = progress.Tracker("ingest", 10, stream=stream, clock=clock, tty=True)
    clock.now += 2
    view.update(5)
    record = logging.LogRecord("etl", logging.INFO, __file__, 1, "hello", None, None)
    assert progress.ClearLine(view).filter(record) is True
    assert stream.getvalue().endswith("ETA 0:00:02\r\x1b[K")
