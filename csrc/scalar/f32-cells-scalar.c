/* f32 cell kernels for scalar: register tile 3 rows x 16 columns (4 vectors of 4 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T float
#define FC_VW 4
#define FC_MR 3
#define FC_ISA_ID FC_ISA_SCALAR
#define FC_DTYPE_ID 0
#define FC_SUFFIX f32__scalar
#define FC_KNAME "f32-cells-3x16-scalar"
#include "cells_template.h"
