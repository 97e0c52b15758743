"""Heartbeats: jobs, workers and queue consumers report in, Lookout notices when they stop.

``spec`` builds the typed config, ``schedule`` knows when the next ping is due, ``state`` folds
pings into facts and derives the status at read time, ``store`` keeps the facts durable in
SQLite, ``service`` ties them together for the app, ``routes`` receives the pings over HTTP
(``auth`` checks tokens) and adds the read ``api``, and ``wrap`` is the job side
(``lookout-exporter ping``).
"""
