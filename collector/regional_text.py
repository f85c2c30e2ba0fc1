"""The regional page's prose: what each data-quality counter means, and the method and limits
written from the settings when the result brings no methodology of its own."""

from __future__ import annotations

from collections.abc import Mapping

from kit.html import frame
from kit.html.fmt import fmt_int, fmt_mbit, fmt_num, num

# What each data-quality counter means (collector/clean.py); unknown counters are listed as is.
QUALITY_COUNTERS = {
    "episodes": "outage episodes (power and connectivity)",
    "obs_hours": "agent-hours of observation records",
    "ping_days": "daily latency and loss summaries",
    "speed_tests": "speed tests",
    "unknown_region": "from an agent whose region is not a configured code (or empty)",
    "unknown_type": "an episode that is neither power nor connectivity",
    "unknown_cause": "an episode cause the agent never writes",
    "not_a_number": "a NaN or infinite time or value",
    "negative_duration": "an episode that ends before it starts",
    "zero_duration": "an episode that ends when it starts (the agent never writes one)",
    "absurd_duration": "an episode longer than 31 days",
    "future_timestamp": "dated after the collection time (plus 5 minutes of clock skew)",
    "clock_unset": "dated before 2000: a clock that was never set (counted on every run)",
    "absurd_observed": "a round whose interval is not above 0 s and at most 3,600 s: left out "
                       "of its hour's observed time",
    "absurd_rtt": "latency below 0 or above 60 s",
    "absurd_loss": "loss outside 0..100 %",
    "absurd_speed": "a speed at or below 0, or above 10 Gbit/s",
    "overlap_dropped": "an outage wholly inside an earlier one of the same agent (of two "
                       "starting together, the shorter)",
    "unwatched": "an outage with no second in an hour its line was watched",
    "impossible_share": "a load-shedding share that came out above 1: left empty, not shown as 1",
    "overlap_clipped": "an outage that began before the previous one ended: starts at its end",
    "power_merged": "power episodes of one cut (battery and UPS, or a flat battery then host down): "
                    "merged into one interruption, not bad data; host-down time stays watched "
                    "time",
    "unwatched_clipped": "an outage partly in hours its line was not watched: only the watched "
                         "part counts",
    "observed_clipped": "more than 3,600 observed seconds in one hour: clipped to the hour",
    "flood_speed_tests": "more than 48 speed tests by one agent in one day: the rest dropped",
    "flood_episodes": "more than 1,440 episodes of one type by one agent in one day",
    "window_clipped": "an episode still going at the window's end (or now) counts up to it "
                      "only; its class follows its whole duration; one beginning only after it "
                      "is not counted",
    "retagged": "written without a valid region (before the agent's region was set, or with a "
                "code it later corrected): given the agent's region, kept",
    "site_merged": "one outage of a line seen by several of its agents: merged into one, not bad "
                   "data",
    "site_retagged": "written without a site tag (before the agent was upgraded): given the "
                     "agent's site, kept",
    "missing_agent": "a row without an agent tag",
    "missing_value": "a row without its value, or with one that is not a number",
    "unreadable_store": "a store file refused whole: not the agent's schema, damaged, or too "
                        "large or slow to read (listed below)",
    "bad_json": "a store row whose fields are not a JSON object",
    "bad_tags": "a store row whose series' tags are not a JSON object of text",
    "bad_time": "a store row or episode whose time is not whole nanoseconds",
    "foreign_agent": "a store row of an agent other than the file's own (one agent per file)",
    "bad_summary": "an hourly summary row whose observed time is not a number from 0 to 3,600 s",
    "bad_histogram": "an hourly summary's latency (a store row, or an agent-day InfluxDB summed) "
                     "that cannot be true: a histogram count that is not a whole number, counts "
                     "that do not add up; its observed time is kept",
    "agents_from_summaries": "agents whose observed hours were read from their hourly summaries",
    "agent_hours_from_summaries": "agent-hours of observation read from hourly summaries",
    "agents_from_raw_rows": "agents read from raw rows (no hourly summaries: an older agent, or "
                            "the hours before its first summary)",
    "agent_hours_from_raw_rows": "agent-hours of observation read from raw rows",
}


def default_method(settings: Mapping, tz_label: str) -> str:
    """The "Method and limits" section written from the result's settings. Nearly 60 lines, all
    of them prose: the paragraphs read best in one place, in the page's order."""
    momentary = num(settings.get("momentary_max_s"))
    momentary_txt = (f"{fmt_int(momentary)} s ({fmt_num(momentary / 60, 1)} min)"
                     if momentary is not None else "the momentary limit (IEEE 1366: 5 min)")
    floor = num(settings.get("min_agents"))
    floor_txt = f"{fmt_int(floor)} lines" if floor is not None else "the publication floor"
    watch = num(settings.get("min_watch_h"))
    watch_txt = (f"{fmt_num(watch, 0)} hours (at most half the period)" if watch is not None
                 else "the configured watching time")
    threshold = fmt_mbit(settings.get("speed_threshold_bps"))
    work = str(settings.get("work_hours") or "the configured work hours")
    method = [
        "One line is one customer. Each volunteer runs the linewatch agent on a computer where "
        "they work; it checks the local network, internet hosts and DNS every few seconds, and "
        "watches mains power through the laptop battery, a UPS or the computer going down. "
        "Agents behind one router (one household or office) are one line, a site: their "
        "outages are merged and they count once, in the indices and in regional events.",
        "Customers are observation-aware: an agent counts only for the time it was watching. "
        "The customers served in a cell are the observed agent-time divided by the period's "
        "length, so four agents that watched half the period count as two customers. An "
        "interruption counts only for the agent that saw it.",
        "Power indices follow IEEE 1366: SAIFI is sustained interruptions per customer, SAIDI "
        "minutes of sustained interruption per customer, CAIDI = SAIDI / SAIFI (minutes per "
        "interruption), MAIFI momentary interruptions per customer and ASAI the share of "
        f"observed time with power. Sustained means longer than {momentary_txt}, by the cut's "
        "whole length; shorter cuts count only in MAIFI. A cut counts in the period it began, "
        "its minutes up to the end of the report's window and only while its line was watched "
        "(a computer that was down because the power was cut was watching).",
        "Internet availability is the share of observed time with a working connection. Outages "
        "are split by the cause the agent found: power (the computer was on battery or UPS when "
        "it began), local network (the router or Wi-Fi did not answer), ISP (the local network "
        "answered, the internet did not), DNS (only name resolution failed) or unknown.",
        "The small bracketed figures are 95 % bootstrap intervals: the lines of a cell are "
        "resampled with replacement and the figure recomputed, so an interval shows how much the "
        "figure depends on which volunteers happen to take part. A missing interval could not be "
        "computed.",
        f"Publication floor: a cell with fewer than {floor_txt} that each watched at least "
        f"{watch_txt} is suppressed and shows no figure, to protect volunteers and because a "
        "handful of lines, or minutes of watching, say little about a region. A figure that "
        "rests on fewer lines than its cell has (not every line ran speed tests) says so.",
        f"Times, hours of day and weekdays are in {tz_label}. Work-hours figures count only "
        f"minutes within {work} local time. The load-shedding share of a weekday and hour is the "
        "observed agent-time in that hour without mains power (on battery or UPS, or the host "
        "down) divided by all observed agent-time in that hour.",
        f"Speed figures are medians (p50) and 10th percentiles (p10) of the agents' speed tests; "
        f"'tests under threshold' is the share of tests below {threshold}.",
    ]
    limits = [
        "Volunteers are not a random sample of customers: they chose to run the agent and "
        "often have better equipment and backup power than their neighbours, so the figures "
        "describe their lines, not every line in the region.",
        "A laptop on its battery sees a power cut as it happens; a desktop without a UPS goes "
        "down with the power, and its cut is known only as the time from its last heartbeat to "
        "its next boot, which cannot be told apart from a computer switched off abruptly.",
        "ISP names are free text typed by the volunteers: one ISP spelled two ways shows as two "
        "rows.",
    ]
    return frame.paragraphs(method) + "\n<h3>Limits</h3>\n" + frame.paragraphs(limits)
