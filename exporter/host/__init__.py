"""Host metrics support: the ``host:`` settings, the reader that turns psutil, procfs and
deadline-bound filesystem stats into a frozen ``HostSnapshot``, and the refresher that reads
the host when a scrape asks for it and publishes the snapshot.
"""
