// bmi-dhydro fused HBV kernel: the forward time loop and its checkpointed adjoint (see the docstring of
// bmi_dhydro/physics/fast.py for the design).  The C ABI is in hbv_kernel.h; the build flags are in the Makefile.
#include "hbv_kernel.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
#define HBV_FMA(a, b, c) __builtin_fma((a), (b), (c))
#else
#define HBV_FMA(a, b, c) ((a) * (b) + (c))
#endif
#define HBV_INLINE inline __attribute__((always_inline))

namespace {

enum { P_BETA, P_FC, P_K0, P_K1, P_K2, P_LP, P_PERC, P_UZL, P_TT, P_CFMAX, P_CFR, P_CWH, P_BETAET, P_C, NP };
enum { O_Q, O_Q0, O_Q1, O_Q2, O_ET, O_LEAK, O_RECH, O_EXCESS, O_PERC, O_CAP, O_SP, O_MW, O_SM, O_SUZ, O_SLZ, NO };
constexpr int NS = 5;    // stores
constexpr int NSCR = 9;  // scratch per element and step: 5 start states, pw, log x, pe, log y

using Args = HbvArgs;
static_assert(NS == HBV_NS && NP == HBV_NP && NO == HBV_NO, "hbv_kernel.h and the enums disagree");

HBV_INLINE double as_double(uint64_t b) { double d; std::memcpy(&d, &b, 8); return d; }
HBV_INLINE uint64_t as_bits(double d) { uint64_t b; std::memcpy(&b, &d, 8); return b; }

constexpr double LN2_HI = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000: n * LN2_HI is exact for |n| < 2^20
constexpr double LN2_LO = 1.90821492927058770002e-10;
constexpr double TWO52 = 4503599627370496.0;
constexpr double ROUNDER = 6755399441055744.0;         // 1.5 * 2^52: (x + R) - R rounds to nearest integer

// Natural logarithm as an unevaluated sum hi + lo (about 2^-70 relative), branch-free so loops vectorise.
// log(0) = -inf, log(<0) = log(NaN) = NaN, log(inf) = inf (in hi; lo is then 0).
HBV_INLINE void hbv_log2(double x, double& hi, double& lo) {
  const bool sub = x < 2.2250738585072014e-308;
  const double xs = sub ? x * 18014398509481984.0 : x;   // 2^54 lifts subnormals
  const uint64_t bits = as_bits(xs);
  // exponent as a double without an int->double conversion
  double e = as_double((bits >> 52) | 0x4330000000000000ULL) - TWO52 - 1023.0;
  e = sub ? e - 54.0 : e;
  double m = as_double((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = big ? e + 1.0 : e;
  // log(1 + f) = f + (s (hfsq + R) - hfsq), s = f / (2 + f), R = 2 atanh(s)/s - 2 (fdlibm's decomposition)
  const double f = m - 1.0;                  // exact, |f| < 0.415
  const double s = f / (2.0 + f);            // |s| < 0.1716
  const double z = s * s;
  double p = 2.0 / 25.0;
  p = HBV_FMA(p, z, 2.0 / 23.0); p = HBV_FMA(p, z, 2.0 / 21.0); p = HBV_FMA(p, z, 2.0 / 19.0);
  p = HBV_FMA(p, z, 2.0 / 17.0); p = HBV_FMA(p, z, 2.0 / 15.0); p = HBV_FMA(p, z, 2.0 / 13.0);
  p = HBV_FMA(p, z, 2.0 / 11.0); p = HBV_FMA(p, z, 2.0 / 9.0);  p = HBV_FMA(p, z, 2.0 / 7.0);
  p = HBV_FMA(p, z, 2.0 / 5.0);  p = HBV_FMA(p, z, 2.0 / 3.0);
  const double R = z * p;
  const double hfsq = 0.5 * f * f;
  const double corr = s * (hfsq + R) - hfsq;
  // e ln2_hi + f, exactly as a two-sum; the small terms go to lo
  const double A = e * LN2_HI;               // exact
  const double S = A + f;
  const double bb = S - A;
  const double err = (A - (S - bb)) + (f - bb);
  const double small = err + (e * LN2_LO + corr);   // |small| < |S|
  double h = S + small;                               // renormalise: h carries the value, l the rest
  double l = small - (h - S);
  // special cases as nested selects (no ||/&& on masks: keeps the loops vectorisable)
  h = (x == 0.0) ? -__builtin_inf() : h;
  h = (x < 0.0) ? __builtin_nan("") : h;
  h = (x != x) ? x : h;
  h = (x == __builtin_inf()) ? x : h;
  const bool finite = (h - h) == 0.0;
  l = finite ? l : 0.0;
  hi = h;
  lo = l;
}

HBV_INLINE double hbv_log(double x) { double h, l; hbv_log2(x, h, l); return h + l; }

// 2^k for an integral double k in [-1022, 1023], by building the exponent bits.
HBV_INLINE double pow2i(double k) { return as_double(as_bits(k + (1023.0 + TWO52)) << 52); }

// exp, branch-free (vectorisable), about 1 ulp; overflows to inf and underflows to 0 like exp().
HBV_INLINE double hbv_exp(double y) {
  const bool nan = y != y;
  double yc = y > 709.9 ? 709.9 : y;
  yc = yc < -746.0 ? -746.0 : yc;
  yc = nan ? 0.0 : yc;
  const double nd = (yc * 1.4426950408889634 + ROUNDER) - ROUNDER;
  const double r = (yc - nd * LN2_HI) - nd * LN2_LO;     // |r| <= 0.3466
  double p = 1.0 / 6227020800.0;                       // 1/13!
  p = HBV_FMA(p, r, 1.0 / 479001600.0); p = HBV_FMA(p, r, 1.0 / 39916800.0); p = HBV_FMA(p, r, 1.0 / 3628800.0);
  p = HBV_FMA(p, r, 1.0 / 362880.0);    p = HBV_FMA(p, r, 1.0 / 40320.0);    p = HBV_FMA(p, r, 1.0 / 5040.0);
  p = HBV_FMA(p, r, 1.0 / 720.0);       p = HBV_FMA(p, r, 1.0 / 120.0);      p = HBV_FMA(p, r, 1.0 / 24.0);
  p = HBV_FMA(p, r, 1.0 / 6.0);         p = HBV_FMA(p, r, 0.5);              p = HBV_FMA(p, r, 1.0);
  p = HBV_FMA(p, r, 1.0);
  const double n1 = (nd * 0.5 + ROUNDER) - ROUNDER;    // split 2^n = 2^n1 2^n2, both in range
  const double n2 = nd - n1;
  const double out = p * pow2i(n1) * pow2i(n2);
  return nan ? y : out;
}

// error of the product a*b: a*b == p + two_prod_err(a, b, p) exactly
HBV_INLINE double two_prod_err(double a, double b, double p) {
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
  return __builtin_fma(a, b, -p);
#else
  const double c = 134217729.0;  // Dekker/Veltkamp split
  const double ta = c * a, ah = ta - (ta - a), al = a - ah;
  const double tb = c * b, bh = tb - (tb - b), bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
#endif
}

// x ** b as torch.pow for x >= 0 (about 1 ulp): x == 0 gives 0 (b > 0), 1 (b == 0), inf (b < 0).  Also log x.
HBV_INLINE double hbv_pow(double x, double b, double& lx) {
  double h, l;
  hbv_log2(x, h, l);
  lx = h + l;
  const double yh = b * h;
  double yl = two_prod_err(b, h, yh) + b * l;
  yl = ((yh - yh) == 0.0) ? yl : 0.0;            // inf/NaN exponent: no correction
  const double r = hbv_exp(yh) * (1.0 + yl);     // exp(yh + yl) = exp(yh)(1 + yl), |yl| < 1e-13
  return (b == 0.0) ? 1.0 : r;
}

// ---- float32: x ** b in float lanes (twice the SIMD width of double), a few ulp ------------------------------
// 2^(b log2 x): log2 x = e + log2(m), m in [sqrt(1/2), sqrt(2)), log2(m) = f P(f) with f = m - 1 (degree-7
// polynomial, no division); then y = b log2 x = n + r, |r| <= 1/2, and 2^r by a degree-5 polynomial, scaled by
// adding n to the exponent bits.  Relative error a few ulp plus |y| 2^-24 from rounding y (torch's pow: ~1 ulp);
// the differences from torch stay orders of magnitude below the 1e-5 equality tolerance.  Results below 2^-125
// (about 2.4e-38) are returned as 0 and above 2^127.5 as inf (torch gives subnormal or finite values there), and a
// subnormal x counts as 0.  (Flush-to-zero for the whole kernel was tried and rejected: a subnormal store that
// compares equal to 0 turns a kink into a tie and changes torch's subgradient.)
// The polynomial coefficients are weighted least-squares fits on Chebyshev nodes (max relative error of log2(1 + f)
// 2.0e-7, of 2^r 1.0e-7); both keep x = 1 exact (x ** b == 1), as the clamp that follows needs on its boundary.

HBV_INLINE float as_float(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
HBV_INLINE uint32_t as_bits32(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
#define HBV_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define HBV_FMAF(a, b, c) ((a) * (b) + (c))
#endif
constexpr float LN2F = 0.693147180559945309f;

HBV_INLINE float hbv_powf(float x, float b, float& lx) {
  // x = 2^e m with m in [sqrt(1/2), sqrt(2)): integer arithmetic on the bits, no compares
  // (unsigned arithmetic: wraps instead of overflowing; the >> of a negative int is arithmetic in GCC and Clang)
  const uint32_t bits = as_bits32(x);
  const int32_t e = static_cast<int32_t>(bits - 0x3f3504f3u) >> 23;
  const float m = as_float(bits - (static_cast<uint32_t>(e) << 23));
  const float f = m - 1.0f;
  float p = -0.142378196f;
  p = HBV_FMAF(p, f, 0.232481033f); p = HBV_FMAF(p, f, -0.249322146f); p = HBV_FMAF(p, f, 0.287312478f);
  p = HBV_FMAF(p, f, -0.360223293f); p = HBV_FMAF(p, f, 0.480915904f); p = HBV_FMAF(p, f, -0.721352935f);
  p = HBV_FMAF(p, f, 1.44269502f);
  const float L = static_cast<float>(e) + f * p;      // log2 x
  // 2^y, y = b log2 x = n + r: out-of-range or NaN y gives a meaningless n, replaced by the selects below
  const float y = b * L;
  const float t = y + 12582912.0f;                    // 1.5 * 2^23: rounds y to an integer in t's low bits
  const float n = t - 12582912.0f;
  const uint32_t ni = as_bits32(t) - 0x4b400000u;     // n as an integer (mod 2^32)
  const float r = y - n;                              // exact, |r| <= 1/2
  float q = 0.00132186746f;                          // 2^r = 1 + r Q(r): exactly 1 at r = 0, so 1 ** b == 1
  q = HBV_FMAF(q, r, 0.00967170298f); q = HBV_FMAF(q, r, 0.0555089302f); q = HBV_FMAF(q, r, 0.24022238f);
  q = HBV_FMAF(q, r, 0.693146884f); q = HBV_FMAF(q, r, 1.0f);
  float out = as_float(as_bits32(q) + (ni << 23));
  out = y < -125.0f ? 0.0f : out;
  out = y > 127.5f ? __builtin_inff() : out;
  // special cases as nested selects (keeps the loops vectorisable)
  const float at0 = b > 0.0f ? 0.0f : __builtin_inff();   // x == 0 (or subnormal)
  out = (x > 0.0f) ? out : ((x == 0.0f) ? at0 : __builtin_nanf(""));
  out = (x == __builtin_inff()) ? (b > 0.0f ? x : 0.0f) : out;
  out = (b != b) ? b : out;
  out = (b == 0.0f) ? 1.0f : out;
  float lg = L * LN2F;
  lg = (x > 0.0f) ? lg : ((x == 0.0f) ? -__builtin_inff() : __builtin_nanf(""));
  lg = (x == __builtin_inff()) ? x : lg;
  lx = lg;
  return out;
}

template <class T> HBV_INLINE T max0(T a) { return a < T(0) ? T(0) : a; }                 // clamp(min=0)
template <class T> HBV_INLINE T tmin(T a, T b) { T r = a < b ? a : b; return (a != a) ? a : r; }  // torch.minimum
template <class T> HBV_INLINE T clamp01(T a) { T v = a < T(0) ? T(0) : a; return v > T(1) ? T(1) : v; }
// torch.minimum backward: share of the gradient going to a (the rest, or half on ties, to b)
template <class T> HBV_INLINE T wa(T a, T b) { return a == b ? T(0.5) : (a > b ? T(0) : T(1)); }
template <class T> HBV_INLINE T wb(T a, T b) { return a == b ? T(0.5) : (a < b ? T(0) : T(1)); }

// Sum of x[0..M) in a fixed pairwise order (destroys x); the halving loops vectorise.
template <class T>
HBV_INLINE T tree_sum(T* __restrict x, int64_t len) {
  while (len > 1) {
    const int64_t h = len / 2, rest = len - h;
#pragma omp simd
    for (int64_t m = 0; m < h; ++m) x[m] += x[m + rest];
    len = rest;
  }
  return x[0];
}

// x ** b and log x in the data's precision
// (locals, not struct fields, take the log: a field's address would keep the step's struct out of registers)
HBV_INLINE float pow_lx(float x, float b, float& lx) { return hbv_powf(x, b, lx); }
HBV_INLINE double pow_lx(double x, double b, double& lx) { return hbv_pow(x, b, lx); }

template <class T>
struct Fw {
  // inputs
  T sp, mw, sm, suz, slz, P, Tc, E;
  T BETA, FC, K0, K1, K2, LP, PERC, UZL, TT, CFMAX, CFR, CWH, BETAET, C;
  // intermediates
  bool crain;
  T rain, snow, sp1, a1, m1, melt, mw1, sp2, cc2, dtr, a2, r1, refr, sp3, mw2, a3, tosoil, mw3;
  T x, pw, lx, wet, infil, rech, sm1, a4, excess, sm2, LF, y, pe, ly, ef, d, et, sa, sm3, leak;
  T z, zc, Cs, om, cc, cap, sm4, slz1;
  T suz1, perc, suz2, a5, m5, q0, suz3, q1, suz4, slz2, q2, slz3, q;
};

// One HBV step, the same operations in the same order as physics.hbv.step.  With STORED the pow/log values
// are taken from w (the backward recompute), otherwise they are computed.
template <class T, bool STORED, bool CAP>
HBV_INLINE void fw_step(Fw<T>& w) {
  w.crain = w.Tc >= w.TT;
  w.rain = w.crain ? w.P : T(0);
  w.snow = w.P - w.rain;
  w.sp1 = w.sp + w.snow;
  w.a1 = w.CFMAX * (w.Tc - w.TT);
  w.m1 = max0(w.a1);
  w.melt = tmin(w.m1, w.sp1);
  w.mw1 = w.mw + w.melt;
  w.sp2 = w.sp1 - w.melt;
  w.cc2 = w.CFR * w.CFMAX;
  w.dtr = w.TT - w.Tc;
  w.a2 = w.cc2 * w.dtr;
  w.r1 = max0(w.a2);
  w.refr = tmin(w.r1, w.mw1);
  w.sp3 = w.sp2 + w.refr;
  w.mw2 = w.mw1 - w.refr;
  w.a3 = w.mw2 - w.CWH * w.sp3;
  w.tosoil = max0(w.a3);
  w.mw3 = w.mw2 - w.tosoil;
  w.x = w.sm / w.FC;
  if (!STORED) { T l; const T r = pow_lx(w.x, w.BETA, l); w.pw = r; w.lx = l; }
  w.wet = clamp01(w.pw);
  w.infil = w.rain + w.tosoil;
  w.rech = w.infil * w.wet;
  w.sm1 = (w.sm + w.infil) - w.rech;
  w.a4 = w.sm1 - w.FC;
  w.excess = max0(w.a4);
  w.sm2 = w.sm1 - w.excess;
  w.LF = w.LP * w.FC;
  w.y = w.sm2 / w.LF;
  if (!STORED) { T l; const T r = pow_lx(w.y, w.BETAET, l); w.pe = r; w.ly = l; }
  w.ef = clamp01(w.pe);
  w.d = w.E * w.ef;
  w.et = tmin(w.sm2, w.d);
  w.sa = w.sm2 - w.et;
  w.sm3 = w.sa < T(HBV_SM_FLOOR) ? T(HBV_SM_FLOOR) : w.sa;
  w.leak = w.sm3 - w.sa;
  if (CAP) {
    w.z = w.sm3 / w.FC;
    w.zc = w.z > T(1) ? T(1) : w.z;
    w.Cs = w.C * w.slz;
    w.om = T(1) - w.zc;
    w.cc = w.Cs * w.om;
    w.cap = tmin(w.slz, w.cc);
    w.sm4 = w.sm3 + w.cap;
    w.slz1 = w.slz - w.cap;
  } else {
    w.cap = T(0);
    w.sm4 = w.sm3;
    w.slz1 = w.slz;
  }
  w.suz1 = (w.suz + w.rech) + w.excess;
  w.perc = tmin(w.suz1, w.PERC);
  w.suz2 = w.suz1 - w.perc;
  w.a5 = w.suz2 - w.UZL;
  w.m5 = max0(w.a5);
  w.q0 = w.K0 * w.m5;
  w.suz3 = w.suz2 - w.q0;
  w.q1 = w.K1 * w.suz3;
  w.suz4 = w.suz3 - w.q1;
  w.slz2 = w.slz1 + w.perc;
  w.q2 = w.K2 * w.slz2;
  w.slz3 = w.slz2 - w.q2;
  w.q = (w.q0 + w.q1) + w.q2;
}

// d/dx of x**b given r = x**b and log x, as torch.pow's backward (b * x**(b-1), 0 where b == 0)
template <class T> HBV_INLINE T dpow_dx(T x, T b, T r) {
  T xm1;  // x ** (b - 1)
  if (x > T(0)) xm1 = r / x;
  else xm1 = (b == T(1)) ? T(1) : (b > T(1) ? T(0) : T(__builtin_inf()));
  return b == T(0) ? T(0) : b * xm1;
}
template <class T> HBV_INLINE T dpow_db(T x, T b, T r, T lx) {
  const T v = r * lx;
  const T at0 = b >= T(0) ? T(0) : v;
  return x == T(0) ? at0 : v;
}
// gradient through clamp(v, 0, 1): passes where 0 <= v <= 1
template <class T> HBV_INLINE T pass01(T v, T g) { const T g1 = v >= T(0) ? g : T(0); return v <= T(1) ? g1 : T(0); }

// Adjoint of fw_step.  gs[] holds the adjoints of the new state on entry and of the start state on exit;
// go[] the adjoints of this step's outputs (already divided by nmul); gp[] receives the parameter adjoints.
// Named scalars (no arrays inside the SIMD loops: GCC vectorises structs of scalars reliably).
template <class T> struct St { T sp, mw, sm, suz, slz; };
template <class T> struct Outs { T q, q0, q1, q2, et, leak, rech, excess, perc, cap, sp, mw, sm, suz, slz; };
template <class T> struct Pars { T BETA, FC, K0, K1, K2, LP, PERC, UZL, TT, CFMAX, CFR, CWH, BETAET, C; };

template <class T, bool CAP>
HBV_INLINE void bw_step(const Fw<T>& w, St<T>& gs, const Outs<T>& go, Pars<T>& gp, T& gP, T& gT, T& gE) {
  T g_sp3 = gs.sp + go.sp;
  T g_mw3 = gs.mw + go.mw;
  T g_sm4 = gs.sm + go.sm;
  T g_suz4 = gs.suz + go.suz;
  T g_slz3 = gs.slz + go.slz;
  T g_q0 = go.q0 + go.q;
  T g_q1 = go.q1 + go.q;
  T g_q2 = go.q2 + go.q;
  // slz3 = slz2 - q2 ; q2 = K2 slz2
  T g_slz2 = g_slz3;
  g_q2 = g_q2 - g_slz3;
  gp.K2 = g_q2 * w.slz2;
  g_slz2 = g_slz2 + g_q2 * w.K2;
  // slz2 = slz1 + perc
  T g_slz1 = g_slz2;
  T g_perc = go.perc + g_slz2;
  // suz4 = suz3 - q1 ; q1 = K1 suz3
  T g_suz3 = g_suz4;
  g_q1 = g_q1 - g_suz4;
  gp.K1 = g_q1 * w.suz3;
  g_suz3 = g_suz3 + g_q1 * w.K1;
  // suz3 = suz2 - q0 ; q0 = K0 m5 ; m5 = max(a5, 0) ; a5 = suz2 - UZL
  T g_suz2 = g_suz3;
  g_q0 = g_q0 - g_suz3;
  gp.K0 = g_q0 * w.m5;
  T g_m5 = g_q0 * w.K0;
  T g_a5 = w.a5 >= T(0) ? g_m5 : T(0);
  g_suz2 = g_suz2 + g_a5;
  gp.UZL = -g_a5;
  // suz2 = suz1 - perc ; perc = min(suz1, PERC)
  T g_suz1 = g_suz2;
  g_perc = g_perc - g_suz2;
  g_suz1 = g_suz1 + g_perc * wa(w.suz1, w.PERC);
  gp.PERC = g_perc * wb(w.suz1, w.PERC);
  // suz1 = suz + rech + excess
  T g_suz = g_suz1;
  T g_rech = go.rech + g_suz1;
  T g_excess = go.excess + g_suz1;
  T g_sm3, g_slz;
  T gFC = T(0);
  if (CAP) {
    T g_cap = (go.cap + g_sm4) - g_slz1;
    g_sm3 = g_sm4;
    g_slz = g_slz1;
    g_slz = g_slz + g_cap * wa(w.slz, w.cc);
    T g_cc = g_cap * wb(w.slz, w.cc);
    T g_Cs = g_cc * w.om;
    T g_om = g_cc * w.Cs;
    gp.C = g_Cs * w.slz;
    g_slz = g_slz + g_Cs * w.C;
    T g_z = w.z <= T(1) ? -g_om : T(0);
    g_sm3 = g_sm3 + g_z / w.FC;
    gFC = gFC - g_z * w.sm3 / (w.FC * w.FC);
  } else {
    g_sm3 = g_sm4;
    g_slz = g_slz1;
    gp.C = T(0);
  }
  // leak = sm3 - sa ; sm3 = max(sa, floor)
  g_sm3 = g_sm3 + go.leak;
  T g_sa = -go.leak;
  g_sa = g_sa + (w.sa >= T(HBV_SM_FLOOR) ? g_sm3 : T(0));
  // sa = sm2 - et ; et = min(sm2, d) ; d = E ef ; ef = clamp(pe, 0, 1) ; pe = y ** BETAET ; y = sm2 / LF
  T g_sm2 = g_sa;
  T g_et = go.et - g_sa;
  g_sm2 = g_sm2 + g_et * wa(w.sm2, w.d);
  T g_d = g_et * wb(w.sm2, w.d);
  gE = g_d * w.ef;
  T g_ef = g_d * w.E;
  T g_pe = pass01(w.pe, g_ef);
  T g_y = g_pe * dpow_dx(w.y, w.BETAET, w.pe);
  gp.BETAET = g_pe * dpow_db(w.y, w.BETAET, w.pe, w.ly);
  g_sm2 = g_sm2 + g_y / w.LF;
  T g_LF = -g_y * w.sm2 / (w.LF * w.LF);
  gp.LP = g_LF * w.FC;
  gFC = gFC + g_LF * w.LP;
  // sm2 = sm1 - excess ; excess = max(a4, 0) ; a4 = sm1 - FC
  T g_sm1 = g_sm2;
  g_excess = g_excess - g_sm2;
  T g_a4 = w.a4 >= T(0) ? g_excess : T(0);
  g_sm1 = g_sm1 + g_a4;
  gFC = gFC - g_a4;
  // sm1 = (sm + infil) - rech ; rech = infil wet ; wet = clamp(pw, 0, 1) ; pw = x ** BETA ; x = sm / FC
  T g_sm = g_sm1;
  T g_infil = g_sm1;
  g_rech = g_rech - g_sm1;
  g_infil = g_infil + g_rech * w.wet;
  T g_wet = g_rech * w.infil;
  T g_pw = pass01(w.pw, g_wet);
  T g_x = g_pw * dpow_dx(w.x, w.BETA, w.pw);
  gp.BETA = g_pw * dpow_db(w.x, w.BETA, w.pw, w.lx);
  g_sm = g_sm + g_x / w.FC;
  gFC = gFC - g_x * w.sm / (w.FC * w.FC);
  gp.FC = gFC;
  // infil = rain + tosoil
  T g_rain = g_infil;
  T g_tosoil = g_infil;
  // mw3 = mw2 - tosoil ; tosoil = max(a3, 0) ; a3 = mw2 - CWH sp3
  T g_mw2 = g_mw3;
  g_tosoil = g_tosoil - g_mw3;
  T g_a3 = w.a3 >= T(0) ? g_tosoil : T(0);
  g_mw2 = g_mw2 + g_a3;
  gp.CWH = -g_a3 * w.sp3;
  g_sp3 = g_sp3 - g_a3 * w.CWH;
  // mw2 = mw1 - refr ; sp3 = sp2 + refr ; refr = min(r1, mw1) ; r1 = max(a2, 0) ; a2 = (CFR CFMAX)(TT - Tc)
  T g_mw1 = g_mw2;
  T g_refr = -g_mw2;
  T g_sp2 = g_sp3;
  g_refr = g_refr + g_sp3;
  T g_r1 = g_refr * wa(w.r1, w.mw1);
  g_mw1 = g_mw1 + g_refr * wb(w.r1, w.mw1);
  T g_a2 = w.a2 >= T(0) ? g_r1 : T(0);
  T g_cc2 = g_a2 * w.dtr;
  T g_dtr = g_a2 * w.cc2;
  gp.CFR = g_cc2 * w.CFMAX;
  T gCFMAX = g_cc2 * w.CFR;
  T gTT = g_dtr;
  T gTc = -g_dtr;
  // sp2 = sp1 - melt ; mw1 = mw + melt ; melt = min(m1, sp1) ; m1 = max(a1, 0) ; a1 = CFMAX (Tc - TT)
  T g_sp1 = g_sp2;
  T g_melt = -g_sp2;
  T g_mw = g_mw1;
  g_melt = g_melt + g_mw1;
  T g_m1 = g_melt * wa(w.m1, w.sp1);
  g_sp1 = g_sp1 + g_melt * wb(w.m1, w.sp1);
  T g_a1 = w.a1 >= T(0) ? g_m1 : T(0);
  gCFMAX = gCFMAX + g_a1 * (w.Tc - w.TT);
  T g_dt1 = g_a1 * w.CFMAX;
  gTc = gTc + g_dt1;
  gTT = gTT - g_dt1;
  gp.CFMAX = gCFMAX;
  gp.TT = gTT;
  gT = gTc;
  // sp1 = sp + snow ; snow = P - rain ; rain = where(Tc >= TT, P, 0)
  T g_sp = g_sp1;
  T g_snow = g_sp1;
  g_rain = g_rain - g_snow;
  gP = g_snow + (w.crain ? g_rain : T(0));
  gs.sp = g_sp;
  gs.mw = g_mw;
  gs.sm = g_sm;
  gs.suz = g_suz;
  gs.slz = g_slz;
}

// Units are processed in blocks of B units (B * nmul ~ 1024 columns).  At each step one flat SIMD loop runs over
// the block's columns: the (T, n, nmul) inputs and outputs are read and written in contiguous runs (the hardware
// prefetchers follow them), the block's states stay in L1/L2, and consecutive vectors are independent, so the
// long dependency chains of a step (two pow) overlap.  Forcings are spread to the columns first.
inline int64_t block_units(int64_t M) { int64_t b = 1024 / M; return b < 1 ? 1 : b; }
inline int64_t block_size(int64_t M, int64_t units) { const int64_t b = block_units(M); return units < b ? units : b; }
// Row stride of the per-block scratch arrays (each row holds one quantity for the block's columns): an odd number
// of cache lines, so the rows a SIMD iteration touches never sit a multiple of 4 KiB apart.  Rows 4 KiB apart
// (1024 floats, the natural block) make every load that follows a store to another row wait on a false
// dependency (4K aliasing); in the adjoint, whose 14 gradient accumulations load and store a row each, that
// doubled the time per step.
template <class T> inline int64_t row_stride(int64_t cols) {
  const int64_t L = 64 / static_cast<int64_t>(sizeof(T));
  int64_t lines = (cols + L - 1) / L;
  if (lines % 2 == 0) ++lines;
  return lines * L;
}

template <class T>
struct View {
  const Args& a;
  int64_t n, M, nT;
  explicit View(const Args& args) : a(args), n(args.n_units), M(args.nmul), nT(args.n_t) {}
  const T* par(int p, int64_t t, int64_t u) const {
    const T* base = static_cast<const T*>(a.param[p]);
    return base + (a.param_dynamic[p] ? t * n * M : 0) + u * M;
  }
};

#define HBV_LOAD_PARAMS(t, u)                                                                                        \
  const T *__restrict pB = v.par(P_BETA, t, u), *__restrict pFC = v.par(P_FC, t, u),                                \
          *__restrict pK0 = v.par(P_K0, t, u), *__restrict pK1 = v.par(P_K1, t, u),                                 \
          *__restrict pK2 = v.par(P_K2, t, u), *__restrict pLP = v.par(P_LP, t, u),                                 \
          *__restrict pPE = v.par(P_PERC, t, u), *__restrict pUZ = v.par(P_UZL, t, u),                              \
          *__restrict pTT = v.par(P_TT, t, u), *__restrict pCF = v.par(P_CFMAX, t, u),                              \
          *__restrict pCR = v.par(P_CFR, t, u), *__restrict pCW = v.par(P_CWH, t, u),                               \
          *__restrict pBE = v.par(P_BETAET, t, u), *__restrict pC = v.par(P_C, t, u)

#define HBV_SET_PARAMS(w, m)                                                                                         \
  w.BETA = pB[m]; w.FC = pFC[m]; w.K0 = pK0[m]; w.K1 = pK1[m]; w.K2 = pK2[m]; w.LP = pLP[m]; w.PERC = pPE[m];        \
  w.UZL = pUZ[m]; w.TT = pTT[m]; w.CFMAX = pCF[m]; w.CFR = pCR[m]; w.CWH = pCW[m]; w.BETAET = pBE[m]; w.C = pC[m]

// Ask for step t's time-varying inputs of the block ahead of use: each step's run of a (T, n, ...) array is a new
// region 4 KB long, too short for the hardware prefetchers to ramp up on their own.
template <class T>
HBV_INLINE void prefetch_step(const Args& a, const T* F, int64_t t, int64_t n, int64_t ub, int64_t nb, int64_t M) {
  if (t < 0 || t >= a.n_t) return;
  const int64_t line = 64 / sizeof(T);
  for (int p = 0; p < NP; ++p) {
    if (!a.param_dynamic[p]) continue;
    const T* base = static_cast<const T*>(a.param[p]) + (t * n + ub) * M;
    for (int64_t e = 0; e < nb * M; e += line) __builtin_prefetch(base + e, 0, 3);
  }
  const T* f = F + (t * n + ub) * 3;
  for (int64_t e = 0; e < nb * 3; e += line) __builtin_prefetch(f + e, 0, 3);
}

// the dynamic parameters' gradients of step t (written, once, after the adjoint of step t), ahead of use
template <class T>
HBV_INLINE void prefetch_grads(const Args& a, int64_t t, int64_t n, int64_t ub, int64_t nb, int64_t M) {
  if (t < 0 || t >= a.n_t) return;
  const int64_t line = 64 / sizeof(T);
  for (int p = 0; p < NP; ++p) {
    if (!a.param_dynamic[p] || !a.g_param[p]) continue;
    const T* base = static_cast<const T*>(a.g_param[p]) + (t * n + ub) * M;
    for (int64_t e = 0; e < nb * M; e += line) __builtin_prefetch(base + e, 1, 3);
  }
}

// forcings of units [ub, ub + nb) at step t, spread over their columns
template <class T>
HBV_INLINE void spread_forcing(const T* F, int64_t t, int64_t n, int64_t ub, int64_t nb, int64_t M, T* fP, T* fT, T* fE) {
  for (int64_t ui = 0; ui < nb; ++ui) {
    const T* f = F + ((t * n + ub + ui) * 3);
    const T P = f[0], Tc = f[1], E = f[2];
    for (int64_t m = 0; m < M; ++m) { fP[ui * M + m] = P; fT[ui * M + m] = Tc; fE[ui * M + m] = E; }
  }
}

// Fault in the whole pages of [p, p + bytes) now (Linux 5.14+ MADV_POPULATE_WRITE; elsewhere, or when the kernel
// refuses, nothing happens and the first store faults them in as before).  The dynamic parameters' gradients are
// fresh, untouched buffers as large as the parameters: faulting them in with one call per row is cheaper than a
// fault on every page at the first store, and each thread does its own rows, in parallel.  (The transparent
// huge-page advice used before cost more system time than 4 KiB faults at 1e5 units: bench/results/backward.md.)
inline void populate_write(void* p, size_t bytes) {
#if defined(__linux__)
  static const uintptr_t pg = [] { const long v = sysconf(_SC_PAGESIZE); return v > 0 ? uintptr_t(v) : uintptr_t(4096); }();
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + pg - 1) & ~(pg - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(pg - 1);
  if (b > a) (void)madvise(reinterpret_cast<void*>(a), b - a, 23 /* MADV_POPULATE_WRITE */);
#else
  (void)p; (void)bytes;
#endif
}

template <class T, bool CAP>
void forward_units(const Args& a, int64_t u0, int64_t u1) {
  View<T> v(a);
  const int64_t n = v.n, M = v.M, nT = v.nT, K = a.chunk, B = block_size(M, u1 - u0),
                BM = row_stride<T>(B * M);  // row stride of the block's scratch (>= B * M columns)
  const T* F = static_cast<const T*>(a.forcing);
  std::vector<T> st(NS * BM), obuf(NO * BM), fb(3 * BM), sink(BM);
  T* out[NO];
  T* obp[NO];  // per-column values of each output; the ones not requested all go to one small sink (stays in L1)
  for (int o = 0; o < NO; ++o) {
    out[o] = static_cast<T*>(a.out[o]);
    obp[o] = out[o] ? &obuf[o * BM] : &sink[0];
  }
  T* ck = static_cast<T*>(a.ckpt);
  const T inv_den = T(M);
  for (int64_t ub = u0; ub < u1; ub += B) {
    const int64_t nb = (ub + B < u1) ? B : u1 - ub, E_ = nb * M;
    for (int k = 0; k < NS; ++k)
      std::memcpy(&st[k * BM], static_cast<const T*>(a.state_in[k]) + ub * M, E_ * sizeof(T));
    T* __restrict s0 = &st[0];
    T* __restrict s1 = &st[BM];
    T* __restrict s2 = &st[2 * BM];
    T* __restrict s3 = &st[3 * BM];
    T* __restrict s4 = &st[4 * BM];
    T *o_q = obp[O_Q], *o_q0 = obp[O_Q0], *o_q1 = obp[O_Q1], *o_q2 = obp[O_Q2], *o_et = obp[O_ET], *o_lk = obp[O_LEAK],
      *o_rc = obp[O_RECH], *o_ex = obp[O_EXCESS], *o_pc = obp[O_PERC], *o_cp = obp[O_CAP], *o_sp = obp[O_SP],
      *o_mw = obp[O_MW], *o_sm = obp[O_SM], *o_su = obp[O_SUZ], *o_sl = obp[O_SLZ];
    const T* __restrict fP = &fb[0];
    const T* __restrict fT = &fb[BM];
    const T* __restrict fE = &fb[2 * BM];
    for (int64_t t = 0; t < nT; ++t) {
      if (ck && t % K == 0) {
        T* dst = ck + (t / K) * NS * n * M;
        for (int k = 0; k < NS; ++k) std::memcpy(dst + (k * n + ub) * M, &st[k * BM], E_ * sizeof(T));
      }
      prefetch_step(a, F, t + 1, n, ub, nb, M);
      spread_forcing(F, t, n, ub, nb, M, &fb[0], &fb[BM], &fb[2 * BM]);
      HBV_LOAD_PARAMS(t, ub);
#pragma omp simd
      for (int64_t e = 0; e < E_; ++e) {
        Fw<T> w;
        w.sp = s0[e]; w.mw = s1[e]; w.sm = s2[e]; w.suz = s3[e]; w.slz = s4[e];
        w.P = fP[e]; w.Tc = fT[e]; w.E = fE[e];
        HBV_SET_PARAMS(w, e);
        fw_step<T, false, CAP>(w);
        s0[e] = w.sp3; s1[e] = w.mw3; s2[e] = w.sm4; s3[e] = w.suz4; s4[e] = w.slz3;
        // the sink may take several of these in one iteration: plain stores, in order, so that is well defined
        o_q[e] = w.q; o_q0[e] = w.q0; o_q1[e] = w.q1; o_q2[e] = w.q2; o_et[e] = w.et; o_lk[e] = w.leak;
        o_rc[e] = w.rech; o_ex[e] = w.excess; o_pc[e] = w.perc; o_cp[e] = w.cap; o_sp[e] = w.sp3;
        o_mw[e] = w.mw3; o_sm[e] = w.sm4; o_su[e] = w.suz4; o_sl[e] = w.slz3;
      }
      for (int o = 0; o < NO; ++o) {
        if (!out[o]) continue;
        T* dst = out[o] + t * n + ub;
        for (int64_t ui = 0; ui < nb; ++ui) dst[ui] = tree_sum(&obuf[o * BM + ui * M], M) / inv_den;
      }
    }
    for (int k = 0; k < NS; ++k)
      if (a.state_out[k]) std::memcpy(static_cast<T*>(a.state_out[k]) + ub * M, &st[k * BM], E_ * sizeof(T));
  }
}

template <class T, bool CAP>
void backward_units(const Args& a, int64_t u0, int64_t u1) {
  View<T> v(a);
  const int64_t n = v.n, M = v.M, nT = v.nT, K = a.chunk, B = block_size(M, u1 - u0),
                BM = row_stride<T>(B * M);  // row stride of the block's scratch (>= B * M columns)
  const int64_t n_chunks = (nT + K - 1) / K;
  const int64_t SLOT = NSCR * BM;  // scratch per step: [NSCR][B * M]
  const T* F = static_cast<const T*>(a.forcing);
  const T* ck = static_cast<const T*>(a.ckpt);
  // gstat accumulates the static parameters' gradients of the block; dynamic ones go through gcur (below);
  // gradients nobody asked for go to a sink
  // zrow: a row of zeros, read in place of the adjoint of an output nobody differentiates and as the start of a
  // dynamic parameter's gradient (0 + g: the same bits as accumulating into a zeroed row)
  std::vector<T> gst(NS * BM), gstat(NP * BM), scr((K + 1) * SLOT), fb(3 * BM), gfb(3 * BM), gobv(NO * BM, T(0)),
      psink(BM), zrow(BM, T(0));
  T* gob = &gobv[0];
  const T* gor[NO];
  for (int o = 0; o < NO; ++o) gor[o] = a.g_out[o] ? &gobv[o * BM] : &zrow[0];
  const T *go_q = gor[O_Q], *go_q0 = gor[O_Q0], *go_q1 = gor[O_Q1], *go_q2 = gor[O_Q2], *go_et = gor[O_ET],
          *go_lk = gor[O_LEAK], *go_rc = gor[O_RECH], *go_ex = gor[O_EXCESS], *go_pc = gor[O_PERC], *go_cp = gor[O_CAP],
          *go_sp = gor[O_SP], *go_mw = gor[O_MW], *go_sm = gor[O_SM], *go_su = gor[O_SUZ], *go_sl = gor[O_SLZ];
  for (int p = 0; p < NP; ++p) {
    T* dst = static_cast<T*>(a.g_param[p]);
    if (!a.param_dynamic[p] || !dst) continue;
    for (int64_t t = 0; t < nT; ++t) populate_write(dst + (t * n + u0) * M, (u1 - u0) * M * sizeof(T));
  }
  T* gF = static_cast<T*>(a.g_forcing);
  T* __restrict g0 = &gst[0];
  T* __restrict g1 = &gst[BM];
  T* __restrict g2 = &gst[2 * BM];
  T* __restrict g3 = &gst[3 * BM];
  T* __restrict g4 = &gst[4 * BM];
  const T* __restrict fP = &fb[0];
  const T* __restrict fT = &fb[BM];
  const T* __restrict fE = &fb[2 * BM];
  T* __restrict gf = &gfb[0];
  for (int64_t ub = u0; ub < u1; ub += B) {
    const int64_t nb = (ub + B < u1) ? B : u1 - ub, E_ = nb * M;
    for (int k = 0; k < NS; ++k) {
      const T* g = static_cast<const T*>(a.g_state_out[k]);
      if (g) std::memcpy(&gst[k * BM], g + ub * M, E_ * sizeof(T));
      else std::fill(gst.begin() + k * BM, gst.begin() + (k + 1) * BM, T(0));
    }
    std::fill(gstat.begin(), gstat.end(), T(0));
    for (int64_t c = n_chunks - 1; c >= 0; --c) {
      const int64_t t0 = c * K, t1 = (t0 + K < nT) ? t0 + K : nT;
      // recompute the chunk; slot i of the scratch holds the start states of step t0 + i and its pow/log values
      for (int k = 0; k < NS; ++k) std::memcpy(&scr[k * BM], ck + ((c * NS + k) * n + ub) * M, E_ * sizeof(T));
      for (int64_t t = t0; t < t1; ++t) {
        T* __restrict sc = &scr[(t - t0) * SLOT];
        T* __restrict nx = &scr[(t - t0 + 1) * SLOT];
        prefetch_step(a, F, t + 1, n, ub, nb, M);
        spread_forcing(F, t, n, ub, nb, M, &fb[0], &fb[BM], &fb[2 * BM]);
        HBV_LOAD_PARAMS(t, ub);
#pragma omp simd
        for (int64_t e = 0; e < E_; ++e) {
          Fw<T> w;
          w.sp = sc[e]; w.mw = sc[BM + e]; w.sm = sc[2 * BM + e]; w.suz = sc[3 * BM + e]; w.slz = sc[4 * BM + e];
          w.P = fP[e]; w.Tc = fT[e]; w.E = fE[e];
          HBV_SET_PARAMS(w, e);
          fw_step<T, false, CAP>(w);
          sc[5 * BM + e] = w.pw; sc[6 * BM + e] = w.lx; sc[7 * BM + e] = w.pe; sc[8 * BM + e] = w.ly;
          nx[e] = w.sp3; nx[BM + e] = w.mw3; nx[2 * BM + e] = w.sm4; nx[3 * BM + e] = w.suz4; nx[4 * BM + e] = w.slz3;
        }
      }
      // adjoint, backwards through the chunk
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const T* __restrict sc = &scr[(t - t0) * SLOT];
        prefetch_step(a, F, t - 1, n, ub, nb, M);
        prefetch_grads<T>(a, t - 1, n, ub, nb, M);
        spread_forcing(F, t, n, ub, nb, M, &fb[0], &fb[BM], &fb[2 * BM]);
        HBV_LOAD_PARAMS(t, ub);
        // each parameter's gradient row: q[e] = b[e] + g.  Static parameters accumulate over the steps in gstat
        // (b == q); a dynamic parameter's gradient of this step goes straight to the caller's array as 0 + g
        // (b = zrow: each element is written exactly once, so the array needs no zero fill); gradients nobody
        // asked for go to a sink
        T* gpp[NP];
        const T* gpb[NP];
        for (int p = 0; p < NP; ++p) {
          T* dst = static_cast<T*>(a.g_param[p]);
          if (!a.param_dynamic[p]) { gpp[p] = &gstat[p * BM]; gpb[p] = gpp[p]; }
          else if (!dst) { gpp[p] = &psink[0]; gpb[p] = &zrow[0]; }
          else { gpp[p] = dst + (t * n + ub) * M; gpb[p] = &zrow[0]; }
        }
        T *q_B = gpp[P_BETA], *q_FC = gpp[P_FC], *q_K0 = gpp[P_K0], *q_K1 = gpp[P_K1], *q_K2 = gpp[P_K2],
          *q_LP = gpp[P_LP], *q_PE = gpp[P_PERC], *q_UZ = gpp[P_UZL], *q_TT = gpp[P_TT], *q_CF = gpp[P_CFMAX],
          *q_CR = gpp[P_CFR], *q_CW = gpp[P_CWH], *q_BE = gpp[P_BETAET], *q_C = gpp[P_C];
        const T *b_B = gpb[P_BETA], *b_FC = gpb[P_FC], *b_K0 = gpb[P_K0], *b_K1 = gpb[P_K1], *b_K2 = gpb[P_K2],
                *b_LP = gpb[P_LP], *b_PE = gpb[P_PERC], *b_UZ = gpb[P_UZL], *b_TT = gpb[P_TT], *b_CF = gpb[P_CFMAX],
                *b_CR = gpb[P_CFR], *b_CW = gpb[P_CWH], *b_BE = gpb[P_BETAET], *b_C = gpb[P_C];
        // adjoints of this step's outputs, spread over the columns (the mean over nmul divides by M)
        for (int o = 0; o < NO; ++o) {
          const T* g = static_cast<const T*>(a.g_out[o]);
          if (!g) continue;
          for (int64_t ui = 0; ui < nb; ++ui) {
            const T val = g[t * n + ub + ui] / T(M);
            for (int64_t m = 0; m < M; ++m) gob[o * BM + ui * M + m] = val;
          }
        }
#pragma omp simd
        for (int64_t e = 0; e < E_; ++e) {
          Fw<T> w;
          w.sp = sc[e]; w.mw = sc[BM + e]; w.sm = sc[2 * BM + e]; w.suz = sc[3 * BM + e]; w.slz = sc[4 * BM + e];
          w.pw = sc[5 * BM + e]; w.lx = sc[6 * BM + e]; w.pe = sc[7 * BM + e]; w.ly = sc[8 * BM + e];
          w.P = fP[e]; w.Tc = fT[e]; w.E = fE[e];
          HBV_SET_PARAMS(w, e);
          fw_step<T, true, CAP>(w);
          const Outs<T> go = {go_q[e], go_q0[e], go_q1[e], go_q2[e], go_et[e], go_lk[e], go_rc[e], go_ex[e],
                              go_pc[e], go_cp[e], go_sp[e], go_mw[e], go_sm[e], go_su[e], go_sl[e]};
          St<T> gs = {g0[e], g1[e], g2[e], g3[e], g4[e]};
          Pars<T> gp;
          T gP, gT, gE;
          bw_step<T, CAP>(w, gs, go, gp, gP, gT, gE);
          g0[e] = gs.sp; g1[e] = gs.mw; g2[e] = gs.sm; g3[e] = gs.suz; g4[e] = gs.slz;
          // (the sink may take several in one iteration: plain stores in order, well defined)
          q_B[e] = b_B[e] + gp.BETA; q_FC[e] = b_FC[e] + gp.FC; q_K0[e] = b_K0[e] + gp.K0;
          q_K1[e] = b_K1[e] + gp.K1; q_K2[e] = b_K2[e] + gp.K2; q_LP[e] = b_LP[e] + gp.LP;
          q_PE[e] = b_PE[e] + gp.PERC; q_UZ[e] = b_UZ[e] + gp.UZL; q_TT[e] = b_TT[e] + gp.TT;
          q_CF[e] = b_CF[e] + gp.CFMAX; q_CR[e] = b_CR[e] + gp.CFR; q_CW[e] = b_CW[e] + gp.CWH;
          q_BE[e] = b_BE[e] + gp.BETAET; q_C[e] = b_C[e] + gp.C;
          gf[e] = gP; gf[BM + e] = gT; gf[2 * BM + e] = gE;
        }
        if (gF) {
          for (int64_t ui = 0; ui < nb; ++ui) {
            T* dst = gF + (t * n + ub + ui) * 3;
            dst[0] = tree_sum(&gfb[ui * M], M);
            dst[1] = tree_sum(&gfb[BM + ui * M], M);
            dst[2] = tree_sum(&gfb[2 * BM + ui * M], M);
          }
        }
      }
    }
    for (int k = 0; k < NS; ++k) {
      T* dst = static_cast<T*>(a.g_state_in[k]);
      if (dst) std::memcpy(dst + ub * M, &gst[k * BM], E_ * sizeof(T));
    }
    for (int p = 0; p < NP; ++p) {
      T* dst = static_cast<T*>(a.g_param[p]);
      if (!a.param_dynamic[p] && dst) std::memcpy(dst + ub * M, &gstat[p * BM], E_ * sizeof(T));
    }
  }
}

template <class Fn>
int run_threads(const Args& a, Fn fn) {
  int64_t nth = a.n_threads < 1 ? 1 : a.n_threads;
  if (nth > a.n_units) nth = a.n_units;
  if (nth <= 1) { fn(a, 0, a.n_units); return 0; }
  std::vector<std::thread> pool;
  std::vector<int> failed(nth, 0);
  const int64_t per = (a.n_units + nth - 1) / nth;
  for (int64_t i = 1; i < nth; ++i) {
    const int64_t u0 = i * per, u1 = (u0 + per < a.n_units) ? u0 + per : a.n_units;
    if (u0 >= u1) break;
    pool.emplace_back([&, u0, u1, i] { try { fn(a, u0, u1); } catch (...) { failed[i] = 1; } });
  }
  try { fn(a, 0, per < a.n_units ? per : a.n_units); } catch (...) { failed[0] = 1; }
  for (auto& th : pool) th.join();
  for (int f : failed) if (f) return 2;
  return 0;
}

}  // namespace

extern "C" {

int hbv_abi_version() { return HBV_ABI_VERSION; }
int64_t hbv_args_size() { return static_cast<int64_t>(sizeof(Args)); }
double hbv_sm_floor() { return HBV_SM_FLOOR; }

// dtype: 0 float32, 1 float64.  Returns 0 on success.
int hbv_forward(const Args* a, int dtype) {
  try {
    if (dtype == 0) return a->capillary ? run_threads(*a, forward_units<float, true>) : run_threads(*a, forward_units<float, false>);
    if (dtype == 1) return a->capillary ? run_threads(*a, forward_units<double, true>) : run_threads(*a, forward_units<double, false>);
    return 1;
  } catch (...) { return 2; }
}

int hbv_backward(const Args* a, int dtype) {
  try {
    if (dtype == 0) return a->capillary ? run_threads(*a, backward_units<float, true>) : run_threads(*a, backward_units<float, false>);
    if (dtype == 1) return a->capillary ? run_threads(*a, backward_units<double, true>) : run_threads(*a, backward_units<double, false>);
    return 1;
  } catch (...) { return 2; }
}

double hbv_pow_test(double x, double b) { double l; return hbv_pow(x, b, l); }
double hbv_pow_test_f(double x, double b) { float l; return hbv_powf(float(x), float(b), l); }
double hbv_log_test(double x) { return hbv_log(x); }
double hbv_exp_test(double y) { return hbv_exp(y); }

}  // extern "C"
