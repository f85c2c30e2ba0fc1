"""Alerts: episodes, UPS charge, speed tests and the store's health as messages a worker sees.

* :mod:`agent.alerts.model`    the alert record, the event names (a contract: webhooks receive
  them), the channel contract and its errors;
* :mod:`agent.alerts.rules`    pure: which alerts are due, from episodes and a clock (debounce,
  flapping, quiet hours, event filters, one message for a start not yet sent);
* :mod:`agent.alerts.words`    the message templates, in one place, ready for translation;
* :mod:`agent.alerts.channels` the channels (desktop over D-Bus, ntfy, Telegram, a JSON webhook,
  e-mail, Apprise), each loaded only when an alert goes to it;
* :mod:`agent.jobs.alerts`     the job: hears episode changes through the context's hook, keeps
  the alert outbox in the store and delivers it, and fetches the heartbeat URL.
"""
