/* i8-cells.h — the i8 family's kernels: int8 weights and activations, exact int32 products,
 * fp32 scaling, bias, gates and states (the scheme of fastcells/reference_quant.py). The cell
 * epilogues are cells_template.h's; the product is i8-product.h's. Packed layout and operands:
 * internal.h. Compiled once per `i8` FC_KERNEL line of kernels.def, by a unit setup.py
 * generates, with -ffp-contract=off. */
#define FC_T float
#define FC_DTYPE_ID 0
#define FC_I8 1
#define FC_FAMILY_NAME i8
#include "cells_template.h"
