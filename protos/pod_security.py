"""Pod Security Standards: the level names and the Namespace labels that choose them."""

from __future__ import annotations

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
# The cluster default unless `corral server --pod-security` says otherwise.
DEFAULT_LEVEL = BASELINE
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
