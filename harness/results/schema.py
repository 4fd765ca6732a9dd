"""The record types under their first name: plugins written before the records moved to
:mod:`harness.store.schema` import them from here, and keep working."""

from harness.store.schema import *  # noqa: F403
