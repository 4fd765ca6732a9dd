"""The records of runs and their persistence: the layer every other package builds on.

``schema`` (the typed, versioned records and their JSON codec), ``records`` (events into
a repeat record, repeats into a run summary), ``metrics`` (one declaration per metric),
``stats`` (medians, intervals), ``configkey`` (the configuration key), ``flops`` (FLOP
counts and MFU), ``store`` (the SQLite result store) and ``strictjson`` (JSON without
NaN). Nothing here imports a run's machinery, the monitor or the report.
"""
