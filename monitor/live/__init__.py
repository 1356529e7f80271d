"""The live monitor: cameras, models and sinks wired together and supervised (``monitor run``)."""
