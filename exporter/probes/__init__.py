"""One module per probe kind (``http``, ``tcp``, ``tls``, ``dns``, ``smtp``), each exporting its
``KIND`` record (``kind.Kind``): spec, builder, prober, metric families and status-page facts.
``registry.KINDS`` maps kind names to them.

A prober has the signature ``async def probe(spec, ctx) -> None``: it records what it sees into
``ctx.trace`` and raises ``ProbeFailure`` to fail; it takes no timeout: ``runner.run_probe`` owns
the timeout, the timing and the capture of every error. Shared by several kinds: ``connection``
(timed connect and TLS step), ``tlsinfo`` (TLS contexts and what a handshake presented),
``client_tls`` (TLS settings), ``starttls`` (plaintext negotiations), ``http_timing`` (HTTP
phases), ``clients`` (sessions and resolvers shared between probes).
"""
