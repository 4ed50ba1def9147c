"""ESPnet tasks with the early-exit classes registered."""
