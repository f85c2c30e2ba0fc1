"""The agent's jobs: small objects, each with the shared context (config, clock, store, tags,
counters: :mod:`agent.jobs.context`) injected, wired and scheduled in one place,
:mod:`agent.runner`.

==================  ==================  ========================================================
module              job name            what one run does
==================  ==================  ========================================================
``rounds``          ``round``           one probe round, the outage tracker stepped, one commit
``powerjob``        ``power``           the power sensors and power episodes (and, at start,
                                        how the previous run ended)
``speedtests``      ``speedtest``       a speed test when one is due and allowed
``push``            ``push``            the backlog forwarded to InfluxDB
``housekeeping``    ``housekeeping``    retention and size cap (and the store's repair and watch)
``housekeeping``    ``watchdog``        the systemd watchdog's ping
``selfmetrics``     ``minute``          interface counters and the agent's own health
==================  ==================  ========================================================

Every job is run through :class:`agent.jobs.guard.Guard`: timed, a failure logged and counted,
never fatal; the self-metrics report each job's last duration and its failures.
"""
