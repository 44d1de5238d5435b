"""What the CLI input tests share: one valid experiment that each case breaks in one place."""

from __future__ import annotations

#: Valid; a case replaces one fragment of it (the line and column each case expects are
#: positions in this text).
GOOD = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: t}
spec:
  probes:
    - name: web
      http: {url: "http://127.0.0.1:9/health", timeout: 1s}
      interval: 250ms
  slos:
    - {name: avail, probe: web, successRate: ">= 99%", window: 5s}
  faults:
    - name: pause
      processPause: {target: {pid: 1}}
      at: 1s
      duration: 5s
"""
