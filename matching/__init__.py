"""Pure matching core: normalization, candidate ranking and the create-vs-attach decision.

Nothing here performs I/O or imports another Leadbot package; `crm` implements the
repository port declared in `matching.port`.
"""
