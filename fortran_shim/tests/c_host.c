/*
 * c_host -- a C host that loads libbmi_dhydro.so the way NOAA NextGen's Bmi_C_Adapter does:
 * dlopen(path, RTLD_NOW | RTLD_LOCAL), dlsym(<registration function>), call it on a zeroed Bmi
 * struct, then initialize(config). It is linked against nothing but libdl: Python, numpy and
 * torch all arrive through the dlopen()ed library.
 *
 *   c_host LIB CONFIG FORCING NSTEPS OUT [REGISTER_FUNC]   run, same output as driver_runoff.f90
 *   c_host LIB --errors CONFIG                               error paths, one line per check
 *
 * Run output: per step [get_value copy (n), live get_value_ptr values (n), current time (1)],
 * float64, appended to OUT. Forcing: per step precipitation rate [n] then temperature [n].
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bmi.h"

#define PRECIP "atmosphere_water__liquid_equivalent_precipitation_rate"
#define TEMP "land_surface_air__temperature"
#define RUNOFF "land_surface_water__runoff_depth"

typedef Bmi *(*register_fn)(Bmi *);
typedef const char *(*last_error_fn)(void);

static last_error_fn last_error = NULL;

static const char *why(void) { return last_error != NULL ? last_error() : "(no dhydro_last_error symbol)"; }

#define CHECK(call, what)                                                    \
  do {                                                                       \
    if ((call) != BMI_SUCCESS) {                                             \
      fprintf(stderr, "c_host: %s failed: %s\n", what, why());               \
      return 2;                                                              \
    }                                                                        \
  } while (0)

static void *load(const char *lib, const char *func, register_fn *reg) {
  dlerror();
  void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    fprintf(stderr, "c_host: dlopen(%s) failed: %s\n", lib, dlerror());
    return NULL;
  }
  *reg = (register_fn)dlsym(handle, func);
  if (*reg == NULL) {
    fprintf(stderr, "c_host: dlsym(%s) failed: %s\n", func, dlerror());
    return NULL;
  }
  last_error = (last_error_fn)dlsym(handle, "dhydro_last_error");
  return handle;
}

/* one line per check: name|status|message */
static void report(const char *name, int status) {
  printf("%s|%d|%s\n", name, status, why());
  fflush(stdout);
}

static int run_errors(register_fn reg, const char *config) {
  Bmi *bad = calloc(1, sizeof(Bmi));
  reg(bad);
  report("bad_config", bad->initialize(bad, "/nonexistent/dir/no_such_config.yaml"));
  report("finalize_uninitialized", bad->finalize(bad));
  free(bad);

  Bmi *model = calloc(1, sizeof(Bmi));
  reg(model);
  report("good_config", model->initialize(model, config));
  int nbytes = -1;
  report("unknown_var_nbytes", model->get_var_nbytes(model, "no_such_variable", &nbytes));
  double buf[64];
  report("unknown_var_get_value", model->get_value(model, "no_such_variable", buf));
  void *ptr = NULL;
  report("unknown_var_get_value_ptr", model->get_value_ptr(model, "no_such_variable", &ptr));
  int inds[1] = {100000};
  report("index_out_of_range", model->get_value_at_indices(model, RUNOFF, buf, inds, 1));
  char type[BMI_MAX_TYPE_NAME];
  report("after_errors_type", model->get_var_type(model, RUNOFF, type));
  printf("runoff_type|%s\n", type);
  report("finalize", model->finalize(model));
  free(model);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[2], "--errors") == 0) {
    register_fn reg = NULL;
    if (load(argv[1], "register_bmi", &reg) == NULL) return 1;
    return run_errors(reg, argv[3]);
  }
  if (argc < 6) {
    fprintf(stderr, "usage: c_host LIB CONFIG FORCING NSTEPS OUT [REGISTER_FUNC]\n"
                    "       c_host LIB --errors CONFIG\n");
    return 64;
  }
  const char *lib = argv[1], *config = argv[2], *forcing_path = argv[3], *out_path = argv[5];
  int nsteps = atoi(argv[4]);
  const char *func = argc > 6 ? argv[6] : "register_bmi";

  register_fn reg = NULL;
  void *handle = load(lib, func, &reg);
  if (handle == NULL) return 1;

  Bmi *model = calloc(1, sizeof(Bmi)); /* ngen: std::make_unique<C_Bmi>(C_Bmi()) */
  if (reg(model) != model) {
    fprintf(stderr, "c_host: %s did not return the struct it was given\n", func);
    return 1;
  }
  CHECK(model->initialize(model, config), "initialize");

  /* variable names the way ngen reads them: caller-allocated buffers */
  int n_out = 0;
  CHECK(model->get_output_item_count(model, &n_out), "get_output_item_count");
  char **names = malloc(sizeof(char *) * (size_t)n_out);
  for (int i = 0; i < n_out; i++) names[i] = malloc(BMI_MAX_VAR_NAME);
  CHECK(model->get_output_var_names(model, names), "get_output_var_names");
  int found = 0;
  for (int i = 0; i < n_out; i++) {
    if (strcmp(names[i], RUNOFF) == 0) found = 1;
    free(names[i]);
  }
  free(names);
  if (!found) {
    fprintf(stderr, "c_host: %s is not among the output variables\n", RUNOFF);
    return 3;
  }

  char type[BMI_MAX_TYPE_NAME], units[BMI_MAX_UNITS_NAME], tunits[BMI_MAX_UNITS_NAME];
  int itemsize = 0, nbytes = 0;
  CHECK(model->get_var_type(model, RUNOFF, type), "get_var_type");
  CHECK(model->get_var_units(model, RUNOFF, units), "get_var_units");
  CHECK(model->get_var_itemsize(model, RUNOFF, &itemsize), "get_var_itemsize");
  CHECK(model->get_var_nbytes(model, RUNOFF, &nbytes), "get_var_nbytes");
  CHECK(model->get_time_units(model, tunits), "get_time_units");
  if (strcmp(type, "double") != 0 || itemsize != (int)sizeof(double)) {
    fprintf(stderr, "c_host: runoff is '%s' with itemsize %d, expected double/8\n", type, itemsize);
    return 3;
  }
  int n = nbytes / itemsize;
  double *precip = malloc(sizeof(double) * (size_t)n), *temp = malloc(sizeof(double) * (size_t)n);
  double *runoff = malloc(sizeof(double) * (size_t)n);
  double *live = NULL;
  CHECK(model->get_value_ptr(model, RUNOFF, (void **)&live), "get_value_ptr");

  FILE *fin = fopen(forcing_path, "rb"), *fout = fopen(out_path, "wb");
  if (fin == NULL || fout == NULL) {
    fprintf(stderr, "c_host: cannot open %s or %s\n", forcing_path, out_path);
    return 1;
  }
  for (int step = 0; step < nsteps; step++) {
    if (fread(precip, sizeof(double), (size_t)n, fin) != (size_t)n ||
        fread(temp, sizeof(double), (size_t)n, fin) != (size_t)n) {
      fprintf(stderr, "c_host: forcing file ended at step %d\n", step);
      return 1;
    }
    CHECK(model->set_value(model, PRECIP, precip), "set_value precipitation");
    CHECK(model->set_value(model, TEMP, temp), "set_value temperature");
    CHECK(model->update(model), "update");
    CHECK(model->get_value(model, RUNOFF, runoff), "get_value");
    double *again = NULL;
    CHECK(model->get_value_ptr(model, RUNOFF, (void **)&again), "get_value_ptr again");
    if (again != live) {
      fprintf(stderr, "c_host: get_value_ptr moved at step %d\n", step);
      return 4;
    }
    double t = 0.0;
    CHECK(model->get_current_time(model, &t), "get_current_time");
    fwrite(runoff, sizeof(double), (size_t)n, fout);
    fwrite(live, sizeof(double), (size_t)n, fout);
    fwrite(&t, sizeof(double), 1, fout);
  }
  fclose(fin);
  fclose(fout);
  CHECK(model->finalize(model), "finalize");
  free(model);
  dlclose(handle);
  printf("c_host: OK %d steps, %d units (runoff %s in %s, time in %s)\n", nsteps, n, type, units, tunits);
  return 0;
}
