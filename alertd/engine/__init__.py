"""The playbook engine: pure decisions from (incidents, event or timer, now); no I/O."""
