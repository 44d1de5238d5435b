"""A run's platform (``spec.target.platform``): what the run shares on this machine
(:mod:`.local`) or in a cluster (:mod:`.kubernetes`), and the contexts fault and probe kinds
plan and run against. Nothing here knows a kind."""
