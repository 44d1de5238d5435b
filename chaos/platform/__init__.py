"""Platform layer: the only code that touches the operating system or external control planes.

Drivers for faults and probes call into this package; it is the single place allowed to use
``subprocess``, signals, ``/proc``, sockets with fault injection and ``tc``. Everything here
translates OS-level failures into :mod:`chaos.errors` exceptions with messages an on-call engineer
can act on. Nothing here depends on :mod:`chaos.engine`.
"""
