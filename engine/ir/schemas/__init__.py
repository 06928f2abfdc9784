"""Every op schema, one module per family; importing this package fills ``SCHEMAS``."""

from engine.ir.schemas import (  # noqa: F401  (imported for registration)
    conv,
    elementwise,
    linalg,
    normalization,
    quant,
    quant_packed,
    recurrent,
    reduce,
    shape,
    tensor,
)
