"""Cron schedules as Debian's cron reads them (vixie cron 3.0), and when they next fire: plain data, no Docker."""

from __future__ import annotations

import time as clock
from datetime import datetime, timedelta

import pytest

from middock_receiver.jobs.schedule import Schedule, ScheduleError, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_the_at_forms_and_their_fields(text, fields):
    schedule = parse(f"  {text}\n")
    assert schedule == Schedule(text.lower(), fields)


def test_whitespace_is_collapsed_and_the_text_kept_as_written():
    schedule = parse(" 0\t3  * JAN-Mar\nmon-fri ")
    assert schedule.text == "0 3 * JAN-Mar mon-fri"
    assert schedule.fields == "0 3 * 1-3 1-5"


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("0 3 * jan-mar mon-fri", "0 3 * 1-3 1-5"),
        ("0 3 * dec sun", "0 3 * 12 0"),
        ("0 3 * feb,Apr,JUN-aug/2 sat,sun", "0 3 * 2,4,6-8/2 6,0"),
        ("1-30/10 */6 1,15,31 */3 7", "1-30/10 */6 1,15,31 */3 7"),
        ("05 0-23/6 * * mon-fri/2", "5 0-23/6 * * 1-5/2"),
        ("0,30 9-17 * * 1-5", "0,30 9-17 * * 1-5"),
    ],
)
def test_fields_hold_numbers_only(text, fields):
    assert parse(text).fields == fields
    assert parse(fields).fields == fields


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("@reboot", ["@reboot", "boot"]),
        ("@REBOOT", ["@reboot", "boot"]),
        ("@yearly", ["@yearly", "@hourly", "@daily", "@weekly", "@monthly"]),
        ("@annually", ["@annually", "@hourly"]),
        ("@midnight", ["@midnight", "@daily"]),
        ("@every5m", ["@every5m", "@monthly"]),
        ("", ["five fields"]),
        ("0 3 * *", ["five fields", "4"]),
        ("0 3 * * * *", ["five fields", "6"]),
        ("@daily 0", ["five fields"]),
        ("daily", ["five fields"]),
        ("61 * * * *", ["minute", "61 is out of 0-59"]),
        ("* 24 * * *", ["hour", "24 is out of 0-23"]),
        ("* * 0 * *", ["day of month", "0 is out of 1-31"]),
        ("* * 32 * *", ["day of month", "32"]),
        ("* * * 13 *", ["month", "13 is out of 1-12"]),
        ("* * * 0 *", ["month", "0 is out of 1-12"]),
        ("* * * * 8", ["day of week", "8 is out of 0-7"]),
        ("* * * * fry", ["day of week", "'fry' is not a number or a day name"]),
        ("* * * janu *", ["month", "'janu' is not a number or a month name"]),
        ("* * * * monday", ["day of week", "'monday'"]),
        ("* * jan * *", ["day of month", "'jan' is not a number"]),
        ("mon * * * *", ["minute", "'mon' is not a number"]),
        ("1,,2 * * * *", ["minute", "empty item"]),
        ("1, * * * *", ["minute", "empty item"]),
        ("* ,3 * * *", ["hour", "empty item"]),
        ("1- * * * *", ["minute", "missing a number"]),
        ("* -3 * * *", ["hour", "missing a number"]),
        ("* * /2 * *", ["day of month", "missing a number"]),
        ("* * * 5-3 *", ["month", "backwards"]),
        ("* * * * fri-mon", ["day of week", "backwards"]),
        ("5/15 * * * *", ["minute", "a step needs * or a range"]),
        ("* * * jan/2 *", ["month", "a step needs * or a range"]),
        ("*/0 * * * *", ["minute", "step"]),
        ("* 1-5/0 * * *", ["hour", "step"]),
        ("* * * * */", ["day of week", "step"]),
        ("* * */x * *", ["day of month", "step"]),
        ("* * * */-1 *", ["month", "step"]),
        ("*-5 * * * *", ["minute", "'*'"]),
        ("1-2-3 * * * *", ["minute", "'2-3'"]),
        ("1.5 * * * *", ["minute", "'1.5'"]),
        ("\u0663 * * * *", ["minute", "not a number"]),
        ("0 0 31 2 *", ["never fires", "31", "February"]),
        ("0 0 30 2 *", ["never fires", "day 30", "February"]),
        ("0 0 30,31 feb *", ["never fires", "day 30", "February"]),
        ("0 0 31 4,6,9,11 *", ["never fires", "day 31", "April or June or September or November"]),
        ("0 0 31 2 */2", ["never fires", "February"]),
    ],
)
def test_refusals_give_the_reason(text, words):
    with pytest.raises(ScheduleError) as caught:
        parse(text)
    reason = str(caught.value)
    assert "\n" not in reason
    for word in words:
        assert word in reason


@pytest.mark.parametrize(
    "text",
    [
        "0 0 29 2 *",  # Feb 29, in leap years
        "0 0 31 2,3 *",  # March 31
        "0 0 31 2 1",  # both days restricted: any Monday of February
        "0 0 */30 2 *",  # day 1 of February
    ],
)
def test_schedules_that_fire_somewhere_are_taken(text):
    parse(text)


@pytest.mark.parametrize(
    ("text", "moment", "expected"),
    [
        # plain
        ("0 3 * * *", "2025-05-10 01:20", "2025-05-10 03:00"),
        ("*/15 * * * *", "2025-05-10 10:01", "2025-05-10 10:15"),
        ("1-30/10 * * * *", "2025-05-10 10:12", "2025-05-10 10:21"),
        ("0,30 9-17 * * *", "2025-05-10 12:00", "2025-05-10 12:30"),
        # strictly after, seconds ignored
        ("0 3 * * *", "2025-05-10 03:00", "2025-05-11 03:00"),
        ("0 3 * * *", "2025-05-10 03:00:59.999999", "2025-05-11 03:00"),
        ("0 3 * * *", "2025-05-10 02:59:59.999999", "2025-05-10 03:00"),
        ("* * * * *", "2025-05-10 02:59:30", "2025-05-10 03:00"),
        ("* * * * *", "2025-05-10 03:00", "2025-05-10 03:01"),
        # rollovers: hour, day, month, year
        ("*/15 * * * *", "2025-05-10 10:50", "2025-05-10 11:00"),
        ("30 23 * * *", "2025-05-10 23:45", "2025-05-11 23:30"),
        ("0 0 * * *", "2025-05-31 12:00", "2025-06-01 00:00"),
        ("0 0 1 * *", "2025-05-15 08:00", "2025-06-01 00:00"),
        ("0 0 31 * *", "2025-04-01 00:00", "2025-05-31 00:00"),
        ("0 0 1 1 *", "2025-12-31 23:59", "2026-01-01 00:00"),
        ("59 23 31 12 *", "2025-12-31 23:59", "2026-12-31 23:59"),
        ("0 12 * jan-mar *", "2025-04-01 00:00", "2026-01-01 12:00"),
        ("@hourly", "2025-12-31 23:00", "2026-01-01 00:00"),
        ("@weekly", "2025-06-01 00:00", "2025-06-08 00:00"),  # 2025-06-01 is a Sunday
        ("@monthly", "2025-12-01 00:00", "2026-01-01 00:00"),
        # both day fields restricted: the 13th or any Friday (July 2025: Fridays 4, 11, 18; the 13th a Sunday)
        ("0 0 13 * 5", "2025-07-01 00:00", "2025-07-04 00:00"),
        ("0 0 13 * 5", "2025-07-11 00:00", "2025-07-13 00:00"),
        ("0 0 13 * 5", "2025-07-13 00:00", "2025-07-18 00:00"),
        # a day field starting with `*` restricts too, but then both must match: an odd day that is a Monday
        ("0 0 */2 * 1", "2025-06-01 00:00", "2025-06-09 00:00"),  # not Monday 2 June: an even day
        ("0 0 * * 1", "2025-06-01 00:00", "2025-06-02 00:00"),
        ("0 0 13 * */7", "2025-01-01 00:00", "2025-04-13 00:00"),  # a 13th that is a Sunday
        # Sunday as 7, as 0 and by name
        ("0 12 * * 7", "2025-06-02 00:00", "2025-06-08 12:00"),
        ("0 12 * * 0", "2025-06-02 00:00", "2025-06-08 12:00"),
        ("0 12 * * SUN", "2025-06-02 00:00", "2025-06-08 12:00"),
        ("0 12 * * 6-7", "2025-06-02 00:00", "2025-06-07 12:00"),
        # leap years
        ("0 0 29 2 *", "2027-03-01 00:00", "2028-02-29 00:00"),
        ("0 0 29 2 *", "2028-02-29 00:00", "2032-02-29 00:00"),
        ("0 0 29 2 */7", "2025-01-01 00:00", "2032-02-29 00:00"),  # 29 February on a Sunday
    ],
)
def test_next_after(text, moment, expected):
    assert parse(text).next_after(at(moment)) == at(expected)


def test_next_after_returns_whole_minutes():
    result = parse("*/5 * * * *").next_after(at("2025-05-10 10:02:17.123456"))
    assert result == at("2025-05-10 10:05")
    assert (result.second, result.microsecond) == (0, 0)


def test_next_after_skips_ahead_instead_of_walking_minutes():
    started = clock.monotonic()
    moment = at("2025-01-01 00:00")
    for _ in range(5):  # 29 February on a Sunday: 2032, 2060, 2088, 2128, 2156 (2100 is no leap year)
        moment = parse("59 23 29 2 */7").next_after(moment)
    assert moment == at("2156-02-29 23:59")
    assert clock.monotonic() - started < 1


def cron_fires(entry: list[str], moment: datetime) -> bool:
    """vixie cron's own test of one minute, written from its fields as plainly as possible."""

    def matches(word: str, value: int, low: int, high: int) -> bool:
        for item in word.split(","):
            body, _, step = item.partition("/")
            first, _, last = (f"{low}-{high}" if body == "*" else body).partition("-")
            if value in range(int(first), int(last or first) + 1, int(step or 1)):
                return True
        return False

    minute, hour, dom, month, dow = entry
    by_date = matches(dom, moment.day, 1, 31)
    weekday = moment.isoweekday() % 7
    by_weekday = matches(dow, weekday, 0, 7) or (weekday == 0 and matches(dow, 7, 0, 7))
    day = (by_date and by_weekday) if dom.startswith("*") or dow.startswith("*") else (by_date or by_weekday)
    clock_and_month = matches(minute, moment.minute, 0, 59) and matches(hour, moment.hour, 0, 23)
    return clock_and_month and matches(month, moment.month, 1, 12) and day


@pytest.mark.parametrize(
    "text",
    [
        "*/7 */5 * * *",
        "0 0 13 * 5",
        "30 6 */2 * 1",
        "5 4 * * sun",
        "0 0,12 1,15 * wed",
        "45 2 * jan-feb,dec *",
        "0 */8 */10 * */3",
        "15 10 31 * *",
        "0 0 1-7 * 1-5/2",
    ],
)
def test_next_after_agrees_with_cron_minute_by_minute(text):
    schedule = parse(text)
    entry = schedule.fields.split()
    start = at("2025-11-20 13:37:42")
    minute = start.replace(second=0)
    expected = []
    while len(expected) < 12 and minute < start + timedelta(days=120):
        minute += timedelta(minutes=1)
        if cron_fires(entry, minute):
            expected.append(minute)
    found, moment = [], start
    for _ in expected:
        moment = schedule.next_after(moment)
        found.append(moment)
    assert expected and found == expected
