"""Host metrics support: the ``host:`` settings, procfs readers, deadline-bound filesystem stats
and the background refresher that keeps ``collectors.host`` supplied with fresh numbers.
"""
