/* f64-cells.h — the f64 family's kernels: f64 weights, activations, states and math.
 * Contract and layout: cells_template.h (operation, tails, accuracy) and internal.h (panels).
 * Compiled once per `f64` FC_KERNEL line of kernels.def, by a unit setup.py generates. */
#define FC_T double
#define FC_DTYPE_ID 1
#define FC_FAMILY_NAME f64
#include "cells_template.h"
