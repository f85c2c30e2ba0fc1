"""The forwarder's pure parts (status classes, backoff, Retry-After, culprits) as tables, and its
loop over a real store with a scripted sink and a fake clock.

The scripted sink stands in for the HTTP edge only so that the decisions can be checked without
waiting out real backoffs; the same statuses from a real HTTP server, through both real writers,
are in tests/test_influx_statuses.py, and real servers in tests/test_influx_servers.py."""

import json
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import FakeClock
from agent.forward import (
    BAD_DATA,
    HALT,
    HALT_RETRY_S,
    MAX_DELAY_S,
    MAX_REFUSED_ALONE,
    OK,
    RETRY,
    TOO_LARGE,
    Forwarder,
    State,
    classify,
    culprits,
    parse_retry_after,
    retry_delay,
)
from agent.model import Sample
from kit.influx import Answer

T0 = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.mark.parametrize("status, kind", [
    (200, OK), (204, OK), (None, RETRY), (408, RETRY), (429, RETRY), (500, RETRY), (502, RETRY),
    (503, RETRY), (504, RETRY), (400, BAD_DATA), (422, BAD_DATA), (413, TOO_LARGE), (401, HALT),
    (403, HALT), (404, HALT), (405, HALT),
], ids=str)
def test_classify(status, kind):
    assert classify(status) == kind


@pytest.mark.parametrize("attempt, rand, want", [
    (1, 0.0, 0.5), (1, 1.0, 1.0), (2, 1.0, 2.0), (4, 0.0, 4.0), (9, 1.0, 256.0),
    (10, 1.0, MAX_DELAY_S), (50, 0.0, MAX_DELAY_S / 2), (10_000, 1.0, MAX_DELAY_S),
], ids=lambda v: str(v))
def test_retry_delay_backoff(attempt, rand, want):
    assert retry_delay(attempt, None, lambda: rand) == want


@pytest.mark.parametrize("retry_after, want", [(7.0, 7.0), (0.0, 0.0), (-3.0, 0.0), (86400.0, 3600.0)])
def test_retry_delay_honours_retry_after(retry_after, want):
    assert retry_delay(3, retry_after, lambda: 0.5) == want


@pytest.mark.parametrize("value, want", [
    ("120", 120.0), (" 5 ", 5.0), ("Fri, 20 Nov 2026 00:01:30 GMT", 90.0),
    ("Thu, 19 Nov 2026 00:00:00 GMT", 0.0), ("soon", None), ("", None), (None, None),
], ids=repr)
def test_parse_retry_after(value, want):
    assert parse_retry_after(value, T0) == want


def test_culprits():
    lines = ["a v=1i 1", "b v=x 2", "c v=3i 3"]
    assert culprits("unable to parse 'b v=x 2': invalid boolean", lines) == [1]
    assert culprits("partial write: points beyond retention policy dropped=3", lines) == [0, 1, 2]
    assert culprits("partial write: field type conflict dropped=1", lines) is None
    assert culprits("bad request", lines) is None


def test_culprits_of_an_influxdb3_partial_write():
    # InfluxDB 3 lists the refused lines in the body of its 400 (no InfluxDB 3 runs on these
    # machines: the body is its documented shape). Numbers count from 1; a number whose line is
    # not the one quoted (the server counted otherwise) gives way to the quoted text.
    lines = ["a v=1i 1", "b v=x 2", "c v=3i 3", "d v= 4"]

    def body(*items):
        return json.dumps({"error": "partial write of line protocol occurred",
                           "data": list(items)}).encode()

    msg = "partial write of line protocol occurred"
    assert culprits(msg, lines, body({"original_line": "b v=x 2", "line_number": 2,
                                      "error_message": "invalid field value"},
                                     {"original_line": "d v= 4", "line_number": 4,
                                      "error_message": "no fields"})) == [1, 3]
    assert culprits(msg, lines, body({"original_line": "d v= 4", "line_number": 1})) == [3]
    assert culprits(msg, lines, body({"line_number": 3})) == [2]
    for bad in (b"", b"not json", b"[1, 2]", json.dumps({"data": "x"}).encode(),
                body({"line_number": 9}), body({"line_number": True}), body("x")):
        assert culprits(msg, lines, bad) is None, bad


# -- the loop ---------------------------------------------------------------------------------

class ScriptedSink:
    """Answers writes from a script (or a function of the lines); records what was sent."""

    def __init__(self, answer=None):
        self.answer = answer or (lambda lines: Answer(204))
        self.script: list[Answer] = []
        self.bodies: list[list[str]] = []

    def send(self, body: bytes) -> Answer:
        lines = body.decode().rstrip("\n").split("\n")
        self.bodies.append(lines)
        return self.script.pop(0) if self.script else self.answer(lines)

    def close(self):
        pass

    @property
    def lines(self):
        return [ln for b in self.bodies for ln in b]


def sample(i: int, t=None, **fields) -> Sample:
    return Sample("ping", {"agent": "a1", "target": "1.1.1.1"},
                  fields or {"rtt_avg_ms": float(i), "seq": i}, t or T0 + timedelta(seconds=10 * i))


def fill(store, n, start=0):
    store.write([sample(i) for i in range(start, start + n)])


def seqs(lines):
    return [int(ln.split("seq=")[1].split("i")[0]) for ln in lines]


def test_sends_everything_oldest_first_and_marks_it(store):
    # Written out of time order: an episode row is inserted when it closes, with its start time.
    store.write([sample(i) for i in (5, 6, 7)])
    store.write([sample(i) for i in (1, 2, 3, 4)])
    sink, clock = ScriptedSink(), FakeClock(T0)
    rep = Forwarder(store, sink, clock, batch_size=3).push()
    assert (rep.sent, rep.requests, rep.outcome) == (7, 3, "done")
    assert seqs(sink.lines) == [1, 2, 3, 4, 5, 6, 7]
    assert store.backlog() == (0, None)


def test_network_error_keeps_rows_and_backs_off(store):
    fill(store, 10)
    clock = FakeClock(T0)
    sink = ScriptedSink(lambda lines: Answer(None, "connection refused"))
    fw = Forwarder(store, sink, clock, batch_size=4, rand=lambda: 1.0)
    rep = fw.push()
    assert (rep.sent, rep.outcome) == (0, "retry")
    assert store.backlog()[0] == 10
    assert not fw.due()
    clock.advance(0.99)
    assert not fw.due()
    clock.advance(0.02)
    assert fw.due()
    fw.push()
    assert fw.state.attempt == 2
    clock.advance(1.5)
    assert not fw.due()  # the second wait is 2 s
    fw.wake()            # the line came back
    assert fw.due()
    sink.answer = lambda lines: Answer(204)
    rep = fw.push()
    assert rep.sent == 10 and fw.state.attempt == 0 and fw.state.last_error["message"] == "connection refused"


def test_retry_after_is_honoured(store):
    fill(store, 3)
    clock = FakeClock(T0)
    sink = ScriptedSink()
    sink.script = [Answer(429, "slow down", "30")]
    fw = Forwarder(store, sink, clock)
    assert fw.push().outcome == "retry"
    clock.advance(29.9)
    assert not fw.due()
    clock.advance(0.2)
    assert fw.due() and fw.push().sent == 3


def test_a_bad_row_named_by_the_server_is_quarantined_alone(store):
    fill(store, 10)
    sink = ScriptedSink()

    def answer(lines):
        bad = [ln for ln in lines if "seq=4i" in ln]
        if bad:
            return Answer(400, f"unable to parse '{bad[0]}': invalid field format")
        return Answer(204)
    sink.answer = answer
    rep = Forwarder(store, sink, FakeClock(T0)).push()
    assert (rep.sent, rep.quarantined, rep.requests) == (9, 1, 2)
    n, recent = store.quarantined()
    assert n == 1 and "seq=4i" in recent[0]["line"] and recent[0]["status"] == 400
    assert "invalid field format" in recent[0]["message"]
    assert store.backlog()[0] == 0


def test_a_bad_row_an_influxdb3_answer_lists_is_quarantined_alone(store):
    fill(store, 10)
    sink = ScriptedSink()

    def answer(lines):
        bad = [(k, ln) for k, ln in enumerate(lines) if "seq=6i" in ln]
        if bad:
            body = json.dumps({"error": "partial write of line protocol occurred", "data": [
                {"original_line": bad[0][1], "line_number": bad[0][0] + 1,
                 "error_message": "invalid column type"}]}).encode()
            return Answer(400, "partial write of line protocol occurred", body=body)
        return Answer(204)
    sink.answer = answer
    rep = Forwarder(store, sink, FakeClock(T0)).push()
    assert (rep.sent, rep.quarantined, rep.requests) == (9, 1, 2)  # no halving: one retry
    n, recent = store.quarantined()
    assert n == 1 and "seq=6i" in recent[0]["line"]


def test_an_unnamed_bad_row_is_found_by_halving(store):
    fill(store, 64)
    sink = ScriptedSink(lambda lines: Answer(400, "partial write: field type conflict dropped=1")
                        if any("seq=37i" in ln for ln in lines) else Answer(204))
    rep = Forwarder(store, sink, FakeClock(T0), batch_size=64).push()
    assert (rep.sent, rep.quarantined) == (63, 1)
    assert rep.requests <= 2 * 6 + 1  # one bad row among 64: two requests per halving level
    assert "seq=37i" in store.quarantined()[1][0]["line"]


def test_all_beyond_retention_is_quarantined_without_halving(store):
    fill(store, 50)
    sink = ScriptedSink(lambda lines: Answer(422, f"points beyond retention policy dropped={len(lines)}"))
    rep = Forwarder(store, sink, FakeClock(T0), batch_size=50).push()
    assert (rep.quarantined, rep.requests) == (50, 1)


def test_a_server_that_refuses_every_row_stops_instead_of_quarantining_all(store):
    fill(store, 200)
    sink = ScriptedSink(lambda lines: Answer(400, "invalid precision"))
    fw = Forwarder(store, sink, FakeClock(T0), batch_size=200)
    rep = fw.push()
    assert rep.outcome == "halt" and "refuses every row" in fw.state.halted
    assert rep.quarantined == MAX_REFUSED_ALONE
    assert store.backlog()[0] == 200 - MAX_REFUSED_ALONE
    assert store.requeue_quarantined() == MAX_REFUSED_ALONE
    assert store.backlog()[0] == 200


def test_413_splits_and_remembers_the_smaller_batch(store):
    fill(store, 40)
    sink = ScriptedSink(lambda lines: Answer(413, "too large") if len(lines) > 10 else Answer(204))
    fw = Forwarder(store, sink, FakeClock(T0), batch_size=40)
    rep = fw.push()
    assert rep.sent == 40 and rep.quarantined == 0
    assert fw.state.batch_limit == 10
    fill(store, 20, start=100)
    sink.bodies.clear()
    fw.push()
    assert [len(b) for b in sink.bodies] == [10, 10]


def test_413_for_one_row_quarantines_it(store):
    fill(store, 1)
    rep = Forwarder(store, ScriptedSink(lambda lines: Answer(413, "too large")), FakeClock(T0)).push()
    assert rep.quarantined == 1 and store.backlog()[0] == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refusal_halts_and_retries_rarely(store, status):
    fill(store, 5)
    clock = FakeClock(T0)
    sink = ScriptedSink(lambda lines: Answer(status, "nope"))
    fw = Forwarder(store, sink, clock)
    assert fw.push().outcome == "halt"
    assert f"({status})" in fw.state.halted and sink.bodies and len(sink.bodies) == 1
    fw.wake()  # the network coming back does not fix a token
    assert not fw.due()
    clock.advance(HALT_RETRY_S - 1)
    assert not fw.due()
    clock.advance(2)
    assert fw.due()
    sink.answer = lambda lines: Answer(204)
    assert fw.push().sent == 5 and fw.state.halted is None


def test_halt_survives_a_restart_but_is_retried_at_start(store):
    fill(store, 5)
    fw = Forwarder(store, ScriptedSink(lambda lines: Answer(401, "unauthorized")), FakeClock(T0))
    fw.push()
    again = Forwarder(store, ScriptedSink(), FakeClock(T0))
    assert again.state.halted and again.due()
    assert again.push().sent == 5 and again.state.halted is None
    assert json.loads(store.get_state("forward"))["sent_total"] == 5


def test_rows_line_protocol_cannot_carry_are_quarantined_locally(store):
    store.write([sample(1), sample(2, rtt_avg_ms=math.nan), sample(3)])
    sink = ScriptedSink()
    rep = Forwarder(store, sink, FakeClock(T0)).push()
    assert (rep.sent, rep.quarantined) == (2, 1)
    q = store.quarantined()[1][0]
    assert q["status"] is None and "not a finite number" in q["message"]


def test_progress_and_stop(store):
    fill(store, 30)
    got = []
    stop = threading.Event()
    sink = ScriptedSink()

    def answer(lines):
        stop.set()  # the agent is asked to stop during the first batch
        return Answer(204)
    sink.answer = answer
    rep = Forwarder(store, sink, FakeClock(T0), batch_size=10).push(progress=got.append, stop=stop)
    assert rep.outcome == "stopped" and rep.sent == 10 and got == [10]
    assert Forwarder(store, ScriptedSink(), FakeClock(T0), batch_size=10).push(
        progress=got.append).sent == 20
    assert got == [10, 10, 10]


def test_state_round_trip_ignores_garbage():
    assert State.from_json("not json").attempt == 0
    st = State(attempt=3, next_try=5.0, halted="x")
    back = State.from_json(st.to_json())
    assert back.attempt == 3 and back.halted == "x" and back.next_try is None


def test_reading_ahead_never_sends_past_a_failure(store):
    """Full batches are read and encoded while the previous one is on its way; a failure still
    stops the loop at that batch, and the next push resumes there, in order."""
    fill(store, 25)
    sink = ScriptedSink()
    sink.script = [Answer(204), Answer(204), Answer(503, "busy")]
    fw = Forwarder(store, sink, FakeClock(T0), batch_size=5)
    rep = fw.push()
    assert (rep.sent, rep.outcome, rep.requests) == (10, "retry", 3)
    assert store.backlog()[0] == 15
    fw.wake()
    rep = fw.push()
    assert rep.sent == 15
    assert seqs(sink.lines) == list(range(10)) + list(range(10, 15)) + list(range(10, 25))


def test_reading_ahead_with_a_bad_row_in_a_later_batch(store):
    fill(store, 30)
    sink = ScriptedSink(lambda lines: Answer(400, "partial write: dropped=1")
                        if any("seq=17i" in ln for ln in lines) else Answer(204))
    rep = Forwarder(store, sink, FakeClock(T0), batch_size=10).push()
    assert (rep.sent, rep.quarantined, rep.outcome) == (29, 1, "done")
    delivered = [s for b in sink.bodies if not any("seq=17i" in ln for ln in b) for s in seqs(b)]
    assert sorted(delivered) == [i for i in range(30) if i != 17]
