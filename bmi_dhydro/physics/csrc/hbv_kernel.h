/* bmi-dhydro fused HBV kernel: the C ABI that bmi_dhydro/physics/fast.py loads with ctypes.
 *
 * Built by the Makefile in this folder (bmi_dhydro runs it at first use, into a per-machine cache).
 * HbvArgs is mirrored field by field by fast._Args; hbv_args_size() and hbv_abi_version() let the loader refuse a
 * library that does not match.  Bump HBV_ABI_VERSION (and fast._ABI_VERSION) whenever this interface changes.
 */
#ifndef BMI_DHYDRO_HBV_KERNEL_H
#define BMI_DHYDRO_HBV_KERNEL_H

#include <stdint.h>

#define HBV_ABI_VERSION 1
/* The soil-moisture floor (mm): equals bmi_dhydro.physics.hbv.SM_FLOOR (checked on load through hbv_sm_floor). */
#define HBV_SM_FLOOR 1e-05

#define HBV_NS 5  /* stores: snowpack, meltwater, sm, suz, slz */
#define HBV_NP 14 /* parameter slots, in the order of fast.KERNEL_PARAMS */
#define HBV_NO 15 /* outputs (component means), in the order of fast.FAST_OUTPUTS */

typedef struct HbvArgs {
  int64_t n_t, n_units, nmul, chunk, n_threads, capillary;
  const void* forcing;              /* (T, n, 3) */
  const void* state_in[HBV_NS];     /* (n, nmul) */
  void* state_out[HBV_NS];          /* (n, nmul) or null */
  const void* param[HBV_NP];        /* (n, nmul) static or (T, n, nmul) dynamic */
  int64_t param_dynamic[HBV_NP];
  void* out[HBV_NO];                /* (T, n) component means, or null */
  void* ckpt;                       /* (n_chunks, NS, n, nmul) states at chunk starts, or null */
  const void* g_out[HBV_NO];        /* (T, n) or null */
  const void* g_state_out[HBV_NS];  /* (n, nmul) or null */
  void* g_state_in[HBV_NS];         /* (n, nmul) or null */
  void* g_forcing;                  /* (T, n, 3) or null */
  void* g_param[HBV_NP];            /* shaped as param, or null */
} HbvArgs;

#ifdef __cplusplus
extern "C" {
#endif

int hbv_abi_version(void);
int64_t hbv_args_size(void);
double hbv_sm_floor(void);

/* dtype: 0 float32, 1 float64.  Return 0 on success, 1 for an unknown dtype, 2 when a thread failed. */
int hbv_forward(const HbvArgs* a, int dtype);
int hbv_backward(const HbvArgs* a, int dtype);

/* the kernel's own pow/log/exp, for tests */
double hbv_pow_test(double x, double b);
double hbv_pow_test_f(double x, double b);
double hbv_log_test(double x);
double hbv_exp_test(double y);

#ifdef __cplusplus
}
#endif

#endif /* BMI_DHYDRO_HBV_KERNEL_H */
