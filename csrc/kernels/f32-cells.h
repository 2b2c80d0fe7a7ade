/* f32-cells.h — the f32 family's kernels: f32 weights, activations, states and math.
 * Contract and layout: cells_template.h (operation, tails, accuracy) and internal.h (panels).
 * Compiled once per `f32` FC_KERNEL line of kernels.def, by a unit setup.py generates. */
#define FC_T float
#define FC_DTYPE_ID 0
#define FC_FAMILY_NAME f32
#include "cells_template.h"
