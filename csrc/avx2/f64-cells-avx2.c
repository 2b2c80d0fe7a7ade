/* f64 cell kernels for avx2: register tile 3 rows x 16 columns (4 vectors of 4 lanes).
 * The kernels are cells_template.h; this file only fixes the type, vector width and tile. */
#define FC_T double
#define FC_VW 4
#define FC_MR 3
#define FC_ISA_ID FC_ISA_AVX2
#define FC_DTYPE_ID 1
#define FC_SUFFIX f64__avx2
#define FC_KNAME "f64-cells-3x16-avx2"
#include "cells_template.h"
