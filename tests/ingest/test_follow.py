"""Following live files and streams with real files, real writer processes and the real CLI as a subprocess.

No timing is asserted: waits are generous bounds on "eventually", and what is
checked is that every line is stored exactly once, wherever it was when the
file rotated, was truncated, compressed or the follower was killed.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closewatch.ingest.follow import FileFollower, ReadOptions, count_lines, whole_lines
from closewatch.jobs.following import enrich_with_catalog
from closewatch.settings import FollowSettings
from closewatch.store import Store

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def close_line(number: int, client: str = "acme", origin: datetime = ORIGIN) -> str:
    """One close as a JSON line; session ids are unique so a stored line is recognisable."""
    return json.dumps({"ts": (origin + timedelta(seconds=number)).isoformat(), "session_id": f"sess-{number:06d}",
                       "close_code": 3007, "close_reason": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms",
                       "client_id": client}) + "\n"


def lines(first: int, last: int) -> str:
    return "".join(close_line(n) for n in range(first, last))


def follower(store: Store, globs: list[str], settle: str = "0s") -> FileFollower:
    return FileFollower(store, globs, enrich_with_catalog(None), ReadOptions(follow=FollowSettings(settle=settle)))


def stored_sessions(store: Store) -> list[str]:
    return store.query("SELECT session_id FROM closures ORDER BY session_id")["session_id"].to_list()


def expect_once(store: Store, count: int) -> None:
    sessions = stored_sessions(store)
    assert len(sessions) == len(set(sessions)), "a line was stored twice"
    assert sessions == [f"sess-{n:06d}" for n in range(count)], f"{len(sessions)} of {count} lines stored"


def wait_for(condition, timeout: float, what: str, follower_: FileFollower | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if follower_ is not None:
            follower_.tick()
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- the pieces -------------------------------------------------------------------------------------


def test_whole_lines_waits_for_a_newline_unless_the_input_ended_and_settled():
    assert whole_lines(b"a\nb\npart", at_end=True, settled=False) == b"a\nb\n"
    assert whole_lines(b"a\nb\npart", at_end=True, settled=True) == b"a\nb\npart"
    assert whole_lines(b"a\nb\npart", at_end=False, settled=True) == b"a\nb\n"  # more is coming: the line goes on
    assert whole_lines(b"no newline at all", at_end=False, settled=False) == b"no newline at all"  # a full chunk: an over-long line
    assert [count_lines(b"a\nb\n"), count_lines(b"a\nb"), count_lines(b"")] == [2, 2, 0]


def test_new_lines_only_a_partial_last_line_waits_and_the_format_stays_with_the_file(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 25))
    follow = follower(store, [str(log)], settle="1h")
    assert follow.tick().lines == 25
    partial = close_line(25)
    with log.open("a") as handle:
        handle.write(partial[:30])
    assert follow.tick().lines == 0, "a line without its newline waits for it"
    with log.open("a") as handle:
        handle.write(partial[30:] + lines(26, 30))
    assert follow.tick().lines == 5
    expect_once(store, 30)
    state = store.query("SELECT format, read_offset, line_no, status FROM follow_state").row(0)
    assert state == ("jsonl", log.stat().st_size, 30, "following")
    assert store.query("SELECT min(source_line), max(source_line) FROM closures").row(0) == (1, 30)


def test_identical_closes_read_in_two_passes_are_two_closes_but_a_restarted_reader_adds_nothing(store, tmp_path):
    log = tmp_path / "app.log"
    same = close_line(7).replace("sess-000007", "")  # no session id: two such closes in one second are alike in every field
    log.write_text(lines(0, 25) + same)
    follow = follower(store, [str(log)])
    follow.tick()
    with log.open("a") as handle:
        handle.write(same)
    follow.tick()
    assert store.query("SELECT count(*) FROM closures WHERE session_id = ''").item() == 2
    assert store.query("SELECT count(DISTINCT event_id) FROM closures").item() == 27
    from closewatch.ingest.follow import StreamFollower  # the same log sent again by a restarted pipe

    with log.open("rb") as stream:
        again = StreamFollower(store, stream, "<stdin>", enrich_with_catalog(None)).start()
        assert again.wait(30), "the stream ends"
        assert again.flush(final=True).lines == 27
        again.close()
    assert store.query("SELECT count(*) FROM closures").item() == 27
    from closewatch import jobs
    from closewatch.ingest.sources import expand_inputs

    whole = jobs.ingest(store, expand_inputs([str(log)]))[0]  # the same file loaded whole later: the same ids
    assert (whole.accepted, whole.duplicates) == (0, 27)


def test_a_last_line_without_newline_is_read_once_the_file_settles(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 25) + close_line(25).rstrip("\n"))
    follow = follower(store, [str(log)], settle="0s")
    follow.tick()
    expect_once(store, 26)


def test_a_store_in_a_folder_whose_name_holds_a_quote_is_followed(tmp_path):
    """The staged chunk lives beside the store: its path reaches DuckDB as a literal, quotes doubled."""
    store = Store(tmp_path / "o'brien" / "closewatch.duckdb")
    log = tmp_path / "app.log"
    log.write_text(lines(0, 5))
    follower(store, [str(log)]).tick()
    expect_once(store, 5)


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 30))
    follow = follower(store, [str(log)], settle="0s")
    follow.tick()
    with log.open("a") as handle:  # written just before the rotation, not yet read
        handle.write(lines(30, 40))
    log.rename(tmp_path / "app.log.1")
    log.write_text(lines(40, 45))
    follow.tick()
    follow.tick()
    expect_once(store, 45)
    statuses = dict(store.query("SELECT regexp_extract(path, '[^/]+$'), status FROM follow_state").rows())
    assert statuses == {"app.log.1": "done", "app.log": "following"}


def test_a_rotated_file_compressed_later_is_recognised_not_read_again(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 40))
    follow = follower(store, [str(tmp_path / "app.log*")], settle="0s")
    follow.tick()
    log.rename(tmp_path / "app.log.1")
    log.write_text(lines(40, 42))
    follow.tick()
    with open(tmp_path / "app.log.1", "rb") as plain, gzip.open(tmp_path / "app.log.1.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    os.unlink(tmp_path / "app.log.1")
    for _ in range(3):
        follow.tick()
    expect_once(store, 42)
    assert store.query("SELECT sum(duplicates) FROM follow_state").item() == 0, "nothing was read twice"
    rows = dict(store.query("SELECT regexp_extract(path, '[^/]+$'), status FROM follow_state").rows())
    assert rows["app.log.1.gz"] == "done" and rows["app.log.1"] == "moved"


def test_copytruncate_starts_again_from_zero_and_the_copy_gives_the_lines_before_the_truncation(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 30))
    follow = follower(store, [str(tmp_path / "app.log*")], settle="0s")
    follow.tick()
    with log.open("a") as handle:
        handle.write(lines(30, 35))  # not read before the copy and the truncation
    shutil.copy(log, tmp_path / "app.log.1")
    with log.open("r+") as handle:
        handle.truncate(0)
    with log.open("a") as handle:
        handle.write(lines(35, 37))
    follow.tick()
    follow.tick()
    expect_once(store, 37)
    assert store.query("SELECT sum(duplicates) FROM follow_state").item() == 0
    # the truncated state is continued by the copy (moved); the truncated file is read again from 0
    assert sorted(store.query("SELECT status FROM follow_state")["status"]) == ["following", "following", "moved"]


def test_a_file_that_disappears_and_one_that_appears_later(store, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    follow = follower(store, [str(folder / "*.log")], settle="0s")
    assert follow.tick().files == 0, "nothing matches yet: no error, the glob is watched"
    (folder / "a.log").write_text(lines(0, 20))
    follow.tick()
    with (folder / "a.log").open("a") as handle:
        handle.write(lines(20, 25))
    os.unlink(folder / "a.log")  # removed with lines not yet read: the open handle still reads them
    follow.tick()
    follow.tick()
    (folder / "b.log").write_text(lines(25, 30))
    follow.tick()
    expect_once(store, 30)
    statuses = dict(store.query("SELECT regexp_extract(path, '[^/]+$'), status FROM follow_state").rows())
    assert statuses == {"a.log": "gone", "b.log": "following"}


def test_a_restarted_follower_resumes_where_the_store_says_and_finds_a_file_renamed_meanwhile(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text(lines(0, 30))
    follower(store, [str(log)]).tick()  # dropped without close(): as if killed
    with log.open("a") as handle:
        handle.write(lines(30, 33))
    log.rename(tmp_path / "app.log.1")  # rotated while nobody followed
    log.write_text(lines(33, 35))
    again = follower(store, [str(log)])
    again.tick()
    again.tick()
    expect_once(store, 35)


def test_an_unknown_format_is_said_once_and_the_file_moves_on(store, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("hello\n" * 30)
    follow = follower(store, [str(log)])
    follow.tick()
    state = store.query("SELECT read_offset, format, error FROM follow_state").row(0)
    assert state[0] == 180 and state[1] is None and "no known log format" in state[2]
    with log.open("a") as handle:
        handle.write(lines(0, 25))
    follow.tick()
    expect_once(store, 25)


# -- real processes ----------------------------------------------------------------------------------

WRITER = """
import json, os, sys, time
from datetime import datetime, timedelta, timezone
path, count, pause, rotate_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
origin = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
handle = open(path, "a")
for n in range(count):
    if n == rotate_at:
        handle.close()
        os.rename(path, path + ".1")
        handle = open(path, "a")
    line = json.dumps({"ts": (origin + timedelta(seconds=n)).isoformat(), "session_id": f"sess-{n:06d}", "close_code": 3007,
                       "close_reason": "Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "client_id": "acme"})
    handle.write(line[:40]); handle.flush()        # a line is written in two pieces: the follower may see half of it
    handle.write(line[40:] + "\\n"); handle.flush()
    time.sleep(pause)
handle.close()
"""


def start_writer(path: Path, count: int, pause: float, rotate_at: int = -1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(count), str(pause), str(rotate_at)])


def cli_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "closewatch.toml").write_text('[follow]\nflush = "300ms"\nsettle = "2s"\n')
    return {**os.environ, "PYTHONPATH": str(ROOT), "CLOSEWATCH_CONFIG": str(tmp_path / "closewatch.toml")}


def closewatch(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "closewatch", "--db", str(tmp_path / "db.duckdb"), *args],
                            env=cli_env(tmp_path), cwd=tmp_path, **popen)


def marks(store: Store) -> int:
    try:
        return store.query("SELECT count(*) FROM follow_marks").item()
    except Exception:  # the follower holds the file this instant, or has not created it yet
        return -1


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def count_stored(store: Store) -> int:
    try:
        return store.query("SELECT count(*) FROM closures").item()
    except Exception:  # the follower holds the file this instant, or has not created it yet
        return -1


@pytest.mark.slow
def test_a_writer_process_a_rotation_and_a_killed_follower_lose_and_double_nothing(tmp_path):
    """`closewatch follow` as a real process while a real writer appends and rotates; SIGKILL mid-way, restart."""
    log = tmp_path / "app.log"
    log.touch()
    store = Store(tmp_path / "db.duckdb", lock_timeout_s=30)
    first = closewatch(tmp_path, "follow", str(log))
    wait_until(lambda: marks(store) == 1, 60, "the follower following the empty file")
    writer = start_writer(log, 400, 0.02, rotate_at=150)
    try:
        deadline = time.monotonic() + 60
        while count_stored(store) < 120 and time.monotonic() < deadline:
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)  # at any line
        first.wait(10)
        second = closewatch(tmp_path, "follow", str(log))
        assert writer.wait(120) == 0
        deadline = time.monotonic() + 90
        while count_stored(store) < 400 and time.monotonic() < deadline:
            time.sleep(0.3)
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0, "Ctrl-C stops the follower cleanly"
    finally:
        for process in (writer, first):
            if process.poll() is None:
                process.kill()
    expect_once(store, 400)
    assert store.query("SELECT count(*) FROM follow_marks").item() == 1, "the killed follower's mark stays (stale), the stopped one's went"


@pytest.mark.slow
def test_ingest_follow_stdin_commits_while_the_stream_is_open_and_a_restarted_pipe_adds_nothing(tmp_path):
    store = Store(tmp_path / "db.duckdb", lock_timeout_s=30)
    reader = closewatch(tmp_path, "ingest", "--follow", "-", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reader.stdin.write(lines(0, 30).encode())
        reader.stdin.flush()
        deadline = time.monotonic() + 60
        while count_stored(store) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count_stored(store) == 30, "lines are stored while the stream is still open"
        reader.stdin.write(lines(30, 40).encode() + close_line(40).rstrip("\n").encode())  # the last without newline
        reader.stdin.close()  # end of stream: what was read is stored, then it exits
        assert reader.wait(60) == 0, reader.stderr.read().decode()
    finally:
        if reader.poll() is None:
            reader.kill()
    expect_once(store, 41)
    # docker logs --since: a restarted pipe sends lines again; Ctrl-C ends it cleanly.
    again = closewatch(tmp_path, "ingest", "--follow", "-", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    again.stdin.write(lines(20, 45).encode())
    again.stdin.flush()
    deadline = time.monotonic() + 60
    while count_stored(store) < 45 and time.monotonic() < deadline:
        time.sleep(0.2)
    again.send_signal(signal.SIGINT)
    assert again.wait(30) == 0, again.stderr.read().decode()
    expect_once(store, 45)
    states = store.query("SELECT kind, path, status FROM follow_state ORDER BY started_at").rows()
    assert states == [("stream", "<stdin>", "ended"), ("stream", "<stdin>", "ended")]
    assert store.query("SELECT count(*) FROM follow_marks").item() == 0


def test_two_followers_of_one_store_keep_to_their_own_files_and_share_one_they_both_name(store, tmp_path):
    (tmp_path / "a.log").write_text(lines(0, 25))
    (tmp_path / "b.log").write_text(lines(25, 50))
    first = follower(store, [str(tmp_path / "a.log")])
    second = follower(store, [str(tmp_path / "*.log")])
    first.tick()
    second.tick()
    first.tick()
    assert {Path(t.state.path).name for t in first.tracked.values()} == {"a.log"}, "not the other follower's file"
    with (tmp_path / "a.log").open("a") as handle:
        handle.write(lines(50, 60))
    for _ in range(3):
        second.tick()
        first.tick()
    sessions = stored_sessions(store)
    assert len(sessions) == len(set(sessions)) == 60
    assert store.query("SELECT count(*) FROM follow_state").item() == 2, "one state per file, whoever reads it"


def test_following_what_is_not_a_file_or_a_pipe_is_one_sentence(run, tmp_path):
    result = run("ingest", "--follow", str(tmp_path))
    assert result.exit_code == 1 and "neither a file nor a named pipe" in result.output
    result = run("ingest", "--follow", str(tmp_path / "missing.log"))
    assert result.exit_code == 1 and "Cannot follow" in result.output and "Traceback" not in result.output
    result = run("ingest", "--follow", "-", "other.log")
    assert result.exit_code == 1 and "--follow reads one input" in result.output
    result = run("ingest")
    assert result.exit_code == 1 and "Name what to load" in result.output


class FakeClock:
    """The follower's idea of how long a file has been quiet, moved by the test (settle without sleeping)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", [*range(9), 22])  # 22 once found a reused inode taken for its old file  # 22 once found a reused inode taken for its old file
def test_any_mix_of_writes_rotations_copytruncates_compressions_and_restarts_stores_every_line_once(store, tmp_path, seed):
    import random

    rng = random.Random(seed)
    log = tmp_path / "app.log"
    log.touch()
    clock = FakeClock()

    def new_follower() -> FileFollower:
        return FileFollower(store, [str(tmp_path / "app.log*")], enrich_with_catalog(None),
                            ReadOptions(follow=FollowSettings(settle="5s")), clock=clock)

    follow, written, pending = new_follower(), 0, ""

    def append(text: str) -> None:
        with log.open("a") as handle:
            handle.write(text)

    def finish_line() -> None:
        nonlocal pending
        append(pending)
        pending = ""

    for _ in range(60):
        action = rng.choice(["append", "append", "partial", "tick", "tick", "rotate", "copytruncate", "compress", "restart", "quiet"])
        if action == "append" and not pending:
            count = rng.randint(1, 30)
            append(lines(written, written + count))
            written += count
        elif action == "partial" and not pending:
            line = close_line(written)
            cut = rng.randint(1, len(line) - 2)
            append(line[:cut])
            pending, written = line[cut:], written + 1
        elif action == "tick":
            follow.tick()
        elif action == "rotate":
            finish_line()  # a logger writes whole lines before it reopens
            if (tmp_path / "app.log.1").exists():
                (tmp_path / "app.log.1").rename(tmp_path / f"app.log.{rng.randint(2, 10**6)}")
            log.rename(tmp_path / "app.log.1")
            log.touch()
        elif action == "copytruncate":
            finish_line()
            if (tmp_path / "app.log.1").exists():
                (tmp_path / "app.log.1").rename(tmp_path / f"app.log.{rng.randint(2, 10**6)}")
            shutil.copy(log, tmp_path / "app.log.1")
            with log.open("r+") as handle:
                handle.truncate(0)
        elif action == "compress" and (tmp_path / "app.log.1").exists():
            packed = tmp_path / f"app.log.1.{rng.randint(0, 10**6)}.gz"
            with open(tmp_path / "app.log.1", "rb") as plain, gzip.open(packed, "wb") as out:
                shutil.copyfileobj(plain, out)
            os.utime(packed, (time.time() - 60, time.time() - 60))  # written a while ago: compressed completely
            os.unlink(tmp_path / "app.log.1")
        elif action == "restart":
            follow = new_follower()  # the old one dropped without a word: as if killed
        elif action == "quiet" and not pending:
            clock.now += 10
    finish_line()
    for _ in range(4):
        clock.now += 10
        follow.tick()
    expect_once(store, written)


def test_a_followed_cri_file_in_the_kubelets_layout_is_labelled_with_its_pod(store, tmp_path):
    """As with `closewatch ingest` (tests/ingest/test_envelopes.py): the kubelet's path names the pod."""
    from closewatch.ingest.envelopes import get_envelope

    log = tmp_path / "pods" / "voice_voicebot-7d9f8b6c5d-x2x9k_0a1b2c3d-4e5f-6789-abcd-ef0123456789" / "voicebot" / "0.log"
    log.parent.mkdir(parents=True)
    timed = [(ORIGIN + timedelta(seconds=n), close_line(n).strip()) for n in range(5)]
    log.write_text("\n".join(get_envelope("cri").wrap(timed, {})) + "\n")
    assert follower(store, [str(log)]).tick().lines == 5
    expect_once(store, 5)
    labels = store.query("SELECT DISTINCT labels FROM closures")["labels"].to_list()
    assert [json.loads(label) for label in labels] == [{"pod": "voicebot-7d9f8b6c5d-x2x9k", "namespace": "voice", "container": "voicebot"}]
