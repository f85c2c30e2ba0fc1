"""The keys of the store's ``state`` table that the agent's jobs write and the readers
(``status``, ``check``, the line report) read back: one list, imported by both sides, so a
reader never has to import the jobs for a string.

=========================  =====================================================================
key                        value (written by)
=========================  =====================================================================
``outage_tracker``         the connectivity tracker, JSON (rounds)
``heartbeat``              the last round's time, monotonic time, boot id, clock trust (rounds)
``clean_exit``             ``{"clean": true|false, ...}``: how the last run stopped (the wiring)
``power_tracker``          the power tracker, JSON (power)
``power_sensors``          the latest reading of each power sensor, their errors (power)
``pending_host_down``      a previous run's ending waiting for a trusted clock (power)
``heartbeat_judged``       the previous run's heartbeat whose ending is recorded (power)
``dropped_host_down``      power cuts that could not be dated, a count (power)
``speedtest_next``         when the next speed test is due, ISO 8601 UTC (speed tests)
``isp_auto``               the ISP name speedtest.net reported, for ``isp = "auto"`` (speed tests)
``site_auto``              the site derived from the gateway's hardware address (rounds)
``forward``                the forwarder's state: backoff, last error, refusal (push)
``interference``           the interference tracker, JSON (service checks)
=========================  =====================================================================

The store keeps two keys of its own (:mod:`agent.store`): ``store_recovered`` (a damaged store
was replaced) and ``dropped_unsent`` (unforwarded rows removed by retention or the size cap).
"""

from __future__ import annotations

STATE_TRACKER = "outage_tracker"
STATE_HEARTBEAT = "heartbeat"
STATE_CLEAN_EXIT = "clean_exit"
STATE_POWER = "power_tracker"
STATE_POWER_SENSORS = "power_sensors"
STATE_PENDING = "pending_host_down"
STATE_JUDGED = "heartbeat_judged"
STATE_DROPPED_HOST_DOWN = "dropped_host_down"
STATE_SPEED_NEXT = "speedtest_next"
STATE_ISP = "isp_auto"
STATE_SITE = "site_auto"
STATE_FORWARD = "forward"
STATE_INTERFERENCE = "interference"
