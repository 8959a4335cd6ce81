"""Cron schedules as Debian's cron daemon (vixie cron 3.0) reads them, and when they next fire.

A job's schedule is checked at deploy time so that one cron would refuse (or that could never run)
fails the push with a reason, instead of being dropped by cron with a line in syslog nobody reads.
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import NamedTuple

from ..settings import digits

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class ScheduleError(ValueError):
    """A schedule cron would refuse or middock does not take; str() is one short reason."""


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # the name of `low`, then of each number after it
    noun: str = ""  # what a name is, for the reason a word is refused


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, "month name"),
    _Field("day of week", 0, 7, DAY_NAMES, "day name"),
)


class _Entry(NamedTuple):
    """A schedule as cron holds it once it has read the line (vixie's `entry`)."""

    fields: str  # numbers only
    minutes_of_day: list[int]  # sorted, hour * 60 + minute
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday (7 folded into it)
    either_day: bool  # neither day field starts with `*`: a day matches on either instead of both

    def fires_on(self, day: date) -> bool:
        by_date, by_weekday = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return (by_date or by_weekday) if self.either_day else (by_date and by_weekday)


@dataclass(frozen=True)
class Schedule:
    """A checked schedule: `text` to show the user, `fields` to write in the crontab line."""

    text: str
    fields: str

    @cached_property
    def _entry(self) -> _Entry:
        return _compile(self.fields.split())

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` at which cron runs the job (naive local time), to show it."""
        entry = self._entry
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day, earliest = start.date(), start.hour * 60 + start.minute
        while True:
            if day.month not in entry.months:
                day = (day.replace(day=1) + timedelta(days=31)).replace(day=1)
            else:
                if entry.fires_on(day):
                    index = bisect.bisect_left(entry.minutes_of_day, earliest)
                    if index < len(entry.minutes_of_day):
                        return datetime.combine(day, time(*divmod(entry.minutes_of_day[index], 60)))
                day += timedelta(days=1)
            earliest = 0


def parse(text: str) -> Schedule:
    """Read a schedule as cron would, so a bad one is refused when deployed rather than never run."""
    words = text.split()
    if len(words) == 1 and words[0].startswith("@"):
        alias = words[0].lower()
        if alias == "@reboot":
            raise ScheduleError("@reboot is not a schedule: jobs run from a release, not at boot")
        if alias not in ALIASES:
            raise ScheduleError(f"{words[0]} is not taken: use five fields or one of {', '.join(ALIASES)}")
        return Schedule(alias, ALIASES[alias])
    if len(words) != 5:
        raise ScheduleError(
            f"a schedule needs five fields (minute hour day-of-month month day-of-week), not {len(words)}"
        )
    return Schedule(" ".join(words), _compile(words).fields)


def _compile(words: list[str]) -> _Entry:
    parsed = [_parse_field(field, word) for field, word in zip(FIELDS, words, strict=True)]
    minutes, hours, days, months, weekdays = (values for _, values in parsed)
    # vixie sets DOM_STAR / DOW_STAR when a day field's first character is `*` (so `*/2` counts)
    either_day = not words[2].startswith("*") and not words[4].startswith("*")
    # Only a date that exists nowhere stops a schedule: every date (29 February too) falls on each weekday
    # in some year, and with both day fields restricted any chosen weekday will do. (2000 is a leap year.)
    if not either_day and min(days) > max(calendar.monthrange(2000, month)[1] for month in months):
        month_names = " or ".join(calendar.month_name[month] for month in sorted(months))
        raise ScheduleError(f"never fires: there is no day {min(days)} in {month_names}")
    return _Entry(
        fields=" ".join(text for text, _ in parsed),
        minutes_of_day=sorted(hour * 60 + minute for hour in hours for minute in minutes),
        days=days,
        months=months,
        weekdays=frozenset(weekday % 7 for weekday in weekdays),
        either_day=either_day,
    )


def _parse_field(field: _Field, word: str) -> tuple[str, frozenset[int]]:
    """One field's text with names replaced by numbers, and the numbers it matches."""
    texts, values = [], set()
    for item in word.split(","):
        if not item:
            raise ScheduleError(f"{field.name}: empty item in {word!r}")
        text, numbers = _parse_item(field, item)
        texts.append(text)
        values.update(numbers)
    return ",".join(texts), frozenset(values)


def _parse_item(field: _Field, item: str) -> tuple[str, range]:
    body, slash, step_text = item.partition("/")
    if body == "*":
        low, high, text = field.low, field.high, "*"
    else:
        first, dash, last = body.partition("-")
        low = _number(field, first, item)
        high = _number(field, last, item) if dash else low
        if low > high:
            raise ScheduleError(f"{field.name}: {item!r} is a range that runs backwards")
        if slash and not dash:
            raise ScheduleError(f"{field.name}: a step needs * or a range before it, not {item!r}")
        text = f"{low}-{high}" if dash else str(low)
    if not slash:
        return text, range(low, high + 1)
    if not (digits(step_text) and int(step_text) >= 1):
        raise ScheduleError(f"{field.name}: the step in {item!r} must be a number of 1 or more")
    step = int(step_text)
    return f"{text}/{step}", range(low, high + 1, step)


def _number(field: _Field, word: str, item: str) -> int:
    if digits(word):
        value = int(word)
        if not field.low <= value <= field.high:
            raise ScheduleError(f"{field.name}: {value} is out of {field.low}-{field.high}")
        return value
    if word.lower() in field.names:
        return field.low + field.names.index(word.lower())
    if not word:
        raise ScheduleError(f"{field.name}: {item!r} is missing a number")
    kind = f"a number or a {field.noun}" if field.noun else "a number"
    raise ScheduleError(f"{field.name}: {word!r} is not {kind}")
