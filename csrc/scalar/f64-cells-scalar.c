/* f64 cell kernels for scalar: register tile 3 rows x 8 columns (4 vectors of 2 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T double
#define FC_VW 2
#define FC_MR 3
#define FC_ISA_ID FC_ISA_SCALAR
#define FC_DTYPE_ID 1
#define FC_SUFFIX f64__scalar
#define FC_KNAME "f64-cells-3x8-scalar"
#include "cells_template.h"
