"""Driver for b_podkill (run with Chaos Toolkit's python): calls
chaosk8s.pod.actions.terminate_pods once per namespace, as an experiment's method would, and
prints one JSON line: {"seconds": wall time of the 10 calls, "pods": pods deleted}.
Each call builds its own API client from $KUBECONFIG, which is what the action does in a run.

    KUBECONFIG=... python bench/podkill_ctk.py LABEL_SELECTOR PERCENT NS [NS ...]
"""

from __future__ import annotations

import json
import sys
import time

from chaosk8s.pod.actions import terminate_pods


def main() -> int:
    label_selector, percent, *namespaces = sys.argv[1:]
    t0 = time.perf_counter()
    deleted = 0
    for ns in namespaces:
        deleted += len(terminate_pods(label_selector=label_selector, ns=ns, qty=int(percent),
                                      mode="percentage", rand=True))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "pods": deleted}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
