"""Heartbeats: jobs, workers and queue consumers report in, Lookout notices when they stop.

``spec`` builds the typed config, ``schedule`` knows when the next ping is due, ``state`` folds
pings into facts and derives the status at read time, ``store`` is the contract of the durable
stores (``sqlite_store``, the default, and ``postgres_store``, shared by replicas), ``service``
ties them together for the app, ``routes`` receives the pings over HTTP (``auth`` checks
tokens), and ``wrap`` is the job side (``lookout-exporter ping``).
"""
