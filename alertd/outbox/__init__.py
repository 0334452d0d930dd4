"""Delivery: outbox actions become one message per recipient, sent by sinks through one
retry stage; every step is a row, written before the step is taken."""
