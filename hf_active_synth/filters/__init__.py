"""Filters applied to generated candidates before they join the training data."""

from .base import Filter, FilterContext
from .generic import ExactDuplicateFilter, LabelAgreementFilter

__all__ = ["ExactDuplicateFilter", "Filter", "FilterContext", "LabelAgreementFilter"]
