/* dispatch.c — CPU feature detection (cpuid + xgetbv on x86-64, getauxval on aarch64, once), the kernel registry built from
 * kernels/kernels.def, and the FASTCELLS_ISA override. Built with baseline flags: nothing here
 * executes a wide instruction, it only decides which kernel file's functions may run.
 *
 * A registry entry whose kernel file was not built (setup.py builds X86 ISAs only on x86-64)
 * has a NULL table: the references are weak, so "compiled" means "linked into this binary". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if FC_X86
#include <cpuid.h>
#endif
#if FC_X86 && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

#define FC_KERNEL(symbol, name, family, isa, role, mr, vw, features, cflags) \
    extern const fc_kernels fc_kernels_##symbol __attribute__((weak));
#include "kernels/kernels.def"

enum { ROLE_TEST = 0, ROLE_DISPATCH = 1, ROLE_UPGRADE = 2 };

typedef struct registry_entry {
    const fc_kernels *kernels;  /* NULL: not compiled into this binary */
    const char *name;
    const fc_family *family;
    fc_isa isa;
    int role;                   /* ROLE_DISPATCH, ROLE_UPGRADE or ROLE_TEST */
    size_t mr, vw;
    const char *features;       /* words of kernels/features.def */
    const char *cflags;
} registry_entry;

static const registry_entry registry[] = {
#define FC_KERNEL(symbol, name, family, isa, role, mr, vw, features, cflags)                  \
    {&fc_kernels_##symbol, name, &fc_family_##family, FC_ISA_##isa, ROLE_##role, mr, vw,      \
     features, cflags},
#include "kernels/kernels.def"
};
enum { NKERNELS = sizeof registry / sizeof registry[0] };

static const char *const isa_names[FC_ISA_COUNT] = {
#define FC_ISA(id, name, arch) #name,
#include "kernels/kernels.def"
};

static const char *const feature_fields[FC_FEATURE_COUNT] = {
#define FC_FEATURE(id, field, name, how) #field,
#include "kernels/features.def"
};

static const char *const feature_names[FC_FEATURE_COUNT] = {
#define FC_FEATURE(id, field, name, how) name,
#include "kernels/features.def"
};

static fc_cpu_features cpu;
static uint64_t cpu_mask;               /* bit f: feature f present */
static int runnable[NKERNELS];          /* compiled, and the CPU has its features */
static fc_isa default_isa = FC_ISA_SCALAR;
static int initialised;

const char *fc_feature_name(fc_feature f)
{
    return (unsigned)f < FC_FEATURE_COUNT ? feature_names[f] : NULL;
}

int fc_cpu_has(fc_feature f) { return (unsigned)f < FC_FEATURE_COUNT && ((cpu_mask >> f) & 1); }

#if FC_X86
static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

enum { EAX, EBX, ECX, EDX };

static int cpuid_bit(unsigned leaf, unsigned subleaf, int reg, int bit)
{
    unsigned r[4];
    if (!__get_cpuid_count(leaf, subleaf, &r[EAX], &r[EBX], &r[ECX], &r[EDX])) return 0;
    return (r[reg] >> bit) & 1;
}

/* Linux enables AMX's tile data (XCR0 bit 18) for a process only once it asks: until then a
 * tile instruction faults. The grant is process-wide and lasts for its life (threads and forks
 * included); asking again is a no-op. It fails if a thread's sigaltstack is too small for the
 * larger signal frame, and on kernels before 5.16: then AMX counts as missing. */
static int amx_granted(void)
{
#if defined(__linux__)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}
#endif

static void detect(void)
{
    memset(&cpu, 0, sizeof cpu);
    cpu_mask = 0;
    /* every `how` of features.def, each 0 off its own architecture */
#if FC_X86
    /* xcr0 may be read only when the OS has enabled xgetbv (cpuid.1:ecx.osxsave) */
    const unsigned long long xcr0 = cpuid_bit(1, 0, ECX, 27) ? xgetbv0() : 0;
#define BASELINE_X86() 1
#define CPUID(leaf, subleaf, reg, bit) cpuid_bit(leaf, subleaf, reg, bit)
#define XCR0(mask) ((xcr0 & (mask)) == (mask))
#define AMX_GRANTED() amx_granted()
#else
#define BASELINE_X86() 0
#define CPUID(leaf, subleaf, reg, bit) 0
#define XCR0(mask) 0
#define AMX_GRANTED() 0
#endif
#if defined(__aarch64__)
    /* the kernel's capability words: what the CPU has and the OS enables */
    const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
#define HWCAP(bit) ((int)((hwcap >> (bit)) & 1))
#define HWCAP2(bit) ((int)((hwcap2 >> (bit)) & 1))
#else
#define HWCAP(bit) 0
#define HWCAP2(bit) 0
#endif
#define FC_FEATURE(id, field, name, how) cpu.field = (how);
#include "kernels/features.def"
#undef BASELINE_X86
#undef CPUID
#undef XCR0
#undef AMX_GRANTED
#undef HWCAP
#undef HWCAP2
#define FC_FEATURE(id, field, name, how) cpu_mask |= (uint64_t)(cpu.field != 0) << FC_FEATURE_##id;
#include "kernels/features.def"
}

/* Does the CPU have every feature named in `words` (space separated fields)? An unknown word
 * is a feature this build cannot check, so it counts as missing. */
static int has_features(const char *words)
{
    for (const char *p = words; *p;) {
        while (*p == ' ') p++;
        const size_t len = strcspn(p, " ");
        if (!len) break;
        int known = 0;
        for (int f = 0; f < FC_FEATURE_COUNT; f++) {
            if (strlen(feature_fields[f]) == len && strncmp(p, feature_fields[f], len) == 0) {
                if (!((cpu_mask >> f) & 1)) return 0;
                known = 1;
                break;
            }
        }
        if (!known) return 0;
        p += len;
    }
    return 1;
}

const char *fc_isa_name(fc_isa isa)
{
    if ((unsigned)isa < FC_ISA_COUNT) return isa_names[isa];
    if (isa >= FC_ISA_KERNEL_BASE && isa - FC_ISA_KERNEL_BASE < NKERNELS)
        return registry[isa - FC_ISA_KERNEL_BASE].name;
    return "?";
}

/* An ISA is compiled when it has a DISPATCH kernel in the binary, available when every one
 * of its compiled DISPATCH kernels runs here (UPGRADE lines only replace them where they run).
 * A registry selector: that entry. */
static int isa_check(fc_isa isa, int need_runnable)
{
    if (isa >= FC_ISA_KERNEL_BASE) {
        const size_t i = (size_t)isa - FC_ISA_KERNEL_BASE;
        return i < NKERNELS && registry[i].kernels && (!need_runnable || runnable[i]);
    }
    int any = 0;
    for (size_t i = 0; i < NKERNELS; i++) {
        if (registry[i].isa != isa || registry[i].role != ROLE_DISPATCH || !registry[i].kernels)
            continue;
        if (need_runnable && !runnable[i]) return 0;
        any = 1;
    }
    return any;
}

int fc_isa_compiled(fc_isa isa) { return isa_check(isa, 0); }

int fc_isa_available(fc_isa isa) { return isa_check(isa, 1); }

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
        for (size_t i = 0; i < NKERNELS; i++)
            runnable[i] = registry[i].kernels != NULL && has_features(registry[i].features);
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

/* For the int8 GEMM registry (kernels/i8-gemm.h); valid after fc_init. */
int fc_cpu_has_features(const char *words) { return has_features(words); }

fc_isa fc_default_isa(void) { return default_isa; }

static int family_is(const fc_family *f, fc_dtype dtype, fc_precision precision)
{
    return f->dtype == dtype && f->precision == precision;
}

const fc_kernels *fc_kernels_for(fc_isa isa, fc_dtype dtype, fc_precision precision)
{
    if (isa >= FC_ISA_KERNEL_BASE) {
        const size_t i = (size_t)isa - FC_ISA_KERNEL_BASE;
        return i < NKERNELS && family_is(registry[i].family, dtype, precision)
                   ? registry[i].kernels : NULL;
    }
    const fc_kernels *found = NULL;
    for (size_t i = 0; i < NKERNELS; i++) {
        const registry_entry *e = &registry[i];
        if (e->isa != isa || !family_is(e->family, dtype, precision)) continue;
        if (e->role == ROLE_DISPATCH && !found) found = e->kernels;
        if (e->role == ROLE_UPGRADE && runnable[i]) found = e->kernels;
    }
    return found;
}

size_t fc_tile_rows(fc_isa isa, fc_dtype dtype)
{
    const fc_kernels *k = fc_kernels_for(isa, dtype, FC_PRECISION_NATIVE);
    return k ? k->mr : 0;
}

size_t fc_tile_cols(fc_isa isa, fc_dtype dtype)
{
    const fc_kernels *k = fc_kernels_for(isa, dtype, FC_PRECISION_NATIVE);
    return k ? 4 * k->vw : 0;
}

size_t fc_kernel_count(void) { return NKERNELS; }

fc_status fc_kernel_info_at(size_t index, fc_kernel_info *out)
{
    if (index >= NKERNELS) return FC_ERR_ARG;
    const registry_entry *e = &registry[index];
    *out = (fc_kernel_info){
        .name = e->name, .family = e->family->name, .isa = e->isa, .dtype = e->family->dtype,
        .precision = e->family->precision,
        .mr = e->mr, .nr = 4 * e->vw, .dispatch = e->role, .compiled = e->kernels != NULL,
        .available = runnable[index], .features = e->features, .cflags = e->cflags,
    };
    return FC_OK;
}
