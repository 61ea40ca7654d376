"""The payments domain: models, money and currencies, statuses, events from
history, settings, and the Temporal client setup shared by the API and worker."""
