/* bf16-cells.h — the bf16 family's kernels: bf16 weights and operands, fp32 sums pair by pair,
 * fp32 bias, gates and states (the scheme of fastcells/reference_quant.py). The cell
 * epilogues are cells_template.h's; the product is bf16-product.h's. Packed layout and
 * operands: internal.h. Compiled once per `bf16` FC_KERNEL line of kernels.def, by a unit
 * setup.py generates, with -ffp-contract=off. */
#define FC_T float
#define FC_DTYPE_ID 0
#define FC_BF16 1
#define FC_FAMILY_NAME bf16
#include "cells_template.h"
