"""``vigil notify``: event messages from ``vigil.events.v1`` to the people who act on them.

:mod:`.rules` picks the channels of a message, :mod:`.channels` delivers (signed webhooks,
MQTT), :mod:`.notifier` records each delivery in SQL and retries it until it lands.
"""
