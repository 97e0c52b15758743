"""``lookout-exporter report``: a period's SLA report from a Prometheus that scraped Lookout.

``prometheus`` asks the HTTP API, ``period`` parses the period, ``compute`` turns the incident
counters into availability, incidents, MTTR and MTBF (the method is docs/reporting.md),
``charts`` draws the small charts (matplotlib, the optional ``report`` extra), ``render`` writes
HTML (``templates/``, autoescaped), Markdown, CSV or JSON, and ``command`` is the subcommand.
"""
