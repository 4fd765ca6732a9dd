"""Results: what a run records and how results are kept, exported and compared.

``records`` (the per-repeat and aggregate records), ``stats`` (medians, intervals),
``configkey`` (the configuration key), ``flops`` (FLOP counts and MFU), ``store`` (the
SQLite result store), ``export`` (CSV/JSON) and ``compare`` (two sets of results).
"""
