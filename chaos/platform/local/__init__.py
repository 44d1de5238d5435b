"""Local-machine platform: faults and observations on the host the runner itself runs on.

- :mod:`.proxy`  an asyncio TCP proxy that injects latency, jitter, bandwidth limits and resets,
- :mod:`.procs`  finding processes through ``/proc`` and signalling them safely (pid reuse checked),
- :mod:`.run`    running a program without a shell, with a timeout that kills its process group,
- :mod:`.stress` low-priority CPU burners that cannot outlive the runner,
- :mod:`.tc`     kernel-level latency with ``tc netem``.
"""
