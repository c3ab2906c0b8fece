"""EntropyLong (the paper's method): entropy → retrieval → verify → units.

A root's high-entropy positions (`stages.entropy`) query the corpus index (`stages.retrieval`); a retrieved document
is kept only where prepending it cuts the entropy at the position by ΔI ≥ ε (`stages.verify`); the kept documents
are placed before the root (`stages.units`).
"""

from ..stages.entropy import ENTROPY_STAGE
from ..stages.retrieval import RETRIEVAL_STAGE
from ..stages.units import UNIT_STAGE
from ..stages.verify import VERIFY_STAGE

STAGES = (ENTROPY_STAGE, RETRIEVAL_STAGE, VERIFY_STAGE, UNIT_STAGE)
