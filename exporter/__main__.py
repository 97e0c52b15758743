"""Allows ``python -m exporter``, the same as the ``lookout-exporter`` command."""

from exporter.cli import main

# Guarded: the config loader process (``config_process``) imports this module again under
# another name when the exporter was started with ``python -m exporter``.
if __name__ == "__main__":
    raise SystemExit(main())
