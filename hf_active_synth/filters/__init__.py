"""Filters applied to generated candidates before they join the training data.

Generic filters are here; modality-specific ones live in `filters.text` (length, near-duplicates, privacy
near-copies of real sentences), `filters.image` (near-duplicates, privacy near-copies, realism) and
`filters.denoising` (realism as a class-conditional DDPM's own denoising error).
"""

from .base import Filter, FilterContext, real_data_filter_names
from .generic import ExactDuplicateFilter, LabelAgreementFilter, LabelProbabilityFloorFilter, label_filters

__all__ = [
    "ExactDuplicateFilter",
    "Filter",
    "FilterContext",
    "LabelAgreementFilter",
    "LabelProbabilityFloorFilter",
    "builtin_real_data_filter_names",
    "label_filters",
    "real_data_filter_names",
]


def builtin_real_data_filter_names() -> frozenset[str]:
    """Names of the library's own filters that check candidates against the real training data.

    A card rendered from a run's history alone (which records filter names, not filter objects) uses these.
    """
    from . import denoising, image, text  # imported here: each pulls in its modality's stack

    builtin = (
        LabelAgreementFilter,
        LabelProbabilityFloorFilter,
        ExactDuplicateFilter,
        text.LengthFilter,
        text.NearDuplicateFilter,
        text.RealNearCopyFilter,
        image.NearDuplicateFilter,
        image.NearCopyFilter,
        image.RealismFilter,
        denoising.DenoisingRealismFilter,
    )
    return real_data_filter_names(builtin)
