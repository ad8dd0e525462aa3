"""Filters applied to generated candidates before they join the training data.

Generic filters are here; modality-specific ones live in `filters.text` (length, near-duplicates, privacy
near-copies of real sentences) and `filters.image` (near-duplicates, privacy near-copies, realism).
"""

from .base import Filter, FilterContext
from .generic import ExactDuplicateFilter, LabelAgreementFilter

__all__ = ["ExactDuplicateFilter", "Filter", "FilterContext", "LabelAgreementFilter"]
