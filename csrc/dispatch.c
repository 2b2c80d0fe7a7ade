/* dispatch.c — CPU feature detection (cpuid + xgetbv, once), the table of compiled kernels, and
 * the FASTCELLS_ISA override. Built with baseline flags: nothing here executes a wide
 * instruction, it only decides which kernel file's functions may run. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if FC_X86
#include <cpuid.h>
#endif

static fc_cpu_features cpu;
static fc_isa default_isa = FC_ISA_SCALAR;
static int initialised;

static const char *const isa_names[FC_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *fc_isa_name(fc_isa isa) { return (unsigned)isa < FC_ISA_COUNT ? isa_names[isa] : "?"; }

#if FC_X86
static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static void detect(void)
{
    memset(&cpu, 0, sizeof cpu);
#if FC_X86
    unsigned a, b, c, d;
    cpu.sse2 = 1;                                       /* x86-64 baseline */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1;
    cpu.avx = (c >> 28) & 1;
    cpu.fma = (c >> 12) & 1;
    if (osxsave) {
        const unsigned long long xcr0 = xgetbv0();
        cpu.os_avx = (xcr0 & 0x6) == 0x6;               /* XMM and YMM state */
        cpu.os_avx512 = cpu.os_avx && (xcr0 & 0xe0) == 0xe0;    /* opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        cpu.avx2 = (b >> 5) & 1;
        cpu.avx512f = (b >> 16) & 1;
        cpu.avx512dq = (b >> 17) & 1;
        cpu.avx512bw = (b >> 30) & 1;
        cpu.avx512vl = (b >> 31) & 1;
    }
#endif
}

int fc_isa_compiled(fc_isa isa)
{
    switch (isa) {
    case FC_ISA_SCALAR: return 1;
    case FC_ISA_AVX2:
    case FC_ISA_AVX512: return FC_X86;
    default: return 0;
    }
}

int fc_isa_available(fc_isa isa)
{
    if (!fc_isa_compiled(isa)) return 0;
    switch (isa) {
    case FC_ISA_SCALAR: return 1;
    case FC_ISA_AVX2: return cpu.os_avx && cpu.avx && cpu.avx2 && cpu.fma;
    case FC_ISA_AVX512: return cpu.os_avx512 && cpu.avx512f && cpu.fma;
    default: return 0;
    }
}

fc_isa fc_best_isa(void)
{
    for (int isa = FC_ISA_COUNT - 1; isa > 0; isa--)
        if (fc_isa_available((fc_isa)isa)) return (fc_isa)isa;
    return FC_ISA_SCALAR;
}

fc_status fc_init(void)
{
    if (!initialised) {
        detect();
        default_isa = fc_best_isa();
        initialised = 1;
    }
    const char *want = getenv("FASTCELLS_ISA");
    if (!want || !*want || strcmp(want, "auto") == 0) return FC_OK;
    for (int isa = 0; isa < FC_ISA_COUNT; isa++) {
        if (strcmp(want, isa_names[isa]) == 0) {
            if (!fc_isa_available((fc_isa)isa)) return FC_ERR_ISA;
            default_isa = (fc_isa)isa;
            return FC_OK;
        }
    }
    return FC_ERR_ARG;
}

const fc_cpu_features *fc_cpu(void) { return &cpu; }

fc_isa fc_default_isa(void) { return default_isa; }

const fc_kernels *fc_kernels_for(fc_isa isa, fc_dtype dtype)
{
#define FC_PICK(i, t, sym) if (isa == (i) && dtype == (t)) return &sym;
    FC_FOR_EACH_KERNELS(FC_PICK)
#undef FC_PICK
    return NULL;
}

size_t fc_tile_rows(fc_isa isa, fc_dtype dtype)
{
    const fc_kernels *k = fc_kernels_for(isa, dtype);
    return k ? k->mr : 0;
}

size_t fc_tile_cols(fc_isa isa, fc_dtype dtype)
{
    const fc_kernels *k = fc_kernels_for(isa, dtype);
    return k ? 4 * k->vw : 0;
}
