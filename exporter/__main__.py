"""Allows ``python -m exporter``, the same as the ``lookout-exporter`` command."""

from exporter.cli import main

raise SystemExit(main())
