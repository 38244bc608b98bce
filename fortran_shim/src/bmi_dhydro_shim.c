/*
 * bmi_dhydro_shim.c -- libbmi_dhydro.so: the CSDMS C BMI (register_bmi) and a handle-based C API
 * over a Python BMI class, by embedding CPython.
 *
 * Design
 *  - Python is started once per process (pthread_once) on the first call and never finalised;
 *    an interpreter that the host already runs is reused. After start-up the GIL is released
 *    and every API call takes it with PyGILState_Ensure, so any host thread may call.
 *  - The interpreter uses the environment the library was built for: sys.executable of that
 *    environment (a venv's bin/python, so site.py adds its site-packages and .pth files) and
 *    its base prefix as home, both baked in at build time (build/shim_config.h).
 *  - Hosts such as NextGen dlopen() the library with RTLD_LOCAL, which also makes libpython's
 *    symbols local, and extension modules (numpy, torch) could then not resolve them. Before
 *    starting Python the library re-opens the already-loaded libpython with RTLD_GLOBAL.
 *  - The library is linked with -z nodelete: dlclose() does not unload it, so the process-wide
 *    state survives a host closing and re-opening it.
 *  - All conversions and checks live in the Python glue (dhydro_shim_glue.py, compiled in);
 *    each function here marshals arguments, calls it, and turns any exception into
 *    BMI_FAILURE plus a per-thread message (dhydro_last_error).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bmi.h"
#include "bmi_dhydro.h"
#include "shim_config.h" /* generated: baked interpreter paths */
#include "glue_py.h"     /* generated: DHYDRO_GLUE_SRC */

#define SHIM_VERSION "0.1.0"
#define DHYDRO_EXPORT __attribute__((visibility("default")))

struct dhydro_model {
  PyObject *shim; /* _dhydro_shim_glue.Shim */
};

static _Thread_local char t_error[DHYDRO_MAX_ERROR];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_python_ok = 0;
static char g_init_error[DHYDRO_MAX_ERROR];
static PyObject *g_glue = NULL; /* the glue module, immortal */
static int g_verbose = 0;

static pthread_mutex_t g_class_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_default_class[1024] = "";
static char g_default_class_out[1024] = "";

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_error, sizeof t_error, fmt, ap);
  va_end(ap);
  if (g_verbose) fprintf(stderr, "bmi_dhydro shim: %s\n", t_error);
}

/* Record the pending Python exception (GIL held) as this thread's error, prefixed by ctx. */
static void error_from_python(const char *ctx) {
  PyObject *type = NULL, *value = NULL, *tb = NULL;
  PyErr_Fetch(&type, &value, &tb);
  if (type == NULL) {
    set_error("%s: failed (no Python exception was set)", ctx);
    return;
  }
  PyErr_NormalizeException(&type, &value, &tb);
  if (value != NULL && tb != NULL) PyException_SetTraceback(value, tb);
  PyObject *text = NULL;
  if (g_glue != NULL && value != NULL)
    text = PyObject_CallMethod(g_glue, "format_exception", "Oi", value, g_verbose >= 2);
  if (text == NULL) {
    PyErr_Clear();
    text = PyObject_Str(value != NULL ? value : type);
  }
  const char *msg = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
  if (msg == NULL) {
    PyErr_Clear();
    msg = "(the Python exception could not be formatted)";
  }
  set_error("%s: %s", ctx, msg);
  Py_XDECREF(text);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
}

DHYDRO_EXPORT const char *dhydro_last_error(void) { return t_error; }

DHYDRO_EXPORT int dhydro_copy_last_error(char *buf, int buflen) {
  int n = (int)strlen(t_error);
  if (buf != NULL && buflen > 0) {
    int k = n < buflen - 1 ? n : buflen - 1;
    memcpy(buf, t_error, (size_t)k);
    buf[k] = '\0';
  }
  return n;
}

DHYDRO_EXPORT void dhydro_clear_error(void) { t_error[0] = '\0'; }

DHYDRO_EXPORT void dhydro_set_last_error(const char *message) {
  snprintf(t_error, sizeof t_error, "%s", message != NULL ? message : "");
  if (g_verbose && t_error[0]) fprintf(stderr, "bmi_dhydro shim: %s\n", t_error);
}

DHYDRO_EXPORT const char *dhydro_shim_version(void) { return SHIM_VERSION; }

/* ------------------------------------------------------------------------------------------ */
/* interpreter start-up                                                                       */
/* ------------------------------------------------------------------------------------------ */

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return (v != NULL && v[0] != '\0') ? v : fallback;
}

/* Make libpython's symbols global even if the host dlopen()ed us with RTLD_LOCAL. */
static void promote_libpython(void) {
  if (getenv("DHYDRO_SHIM_NO_GLOBAL_LIBPYTHON") != NULL) return; /* test switch only */
  Dl_info info;
  void *handle = NULL;
  if (dladdr((void *)&Py_IsInitialized, &info) != 0 && info.dli_fname != NULL)
    handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (handle == NULL) handle = dlopen(DHYDRO_PY_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  /* the handle is kept forever: libpython must never be unloaded */
  (void)handle;
}

static void record_init_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void record_init_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_init_error, sizeof g_init_error, fmt, ap);
  va_end(ap);
  fprintf(stderr, "bmi_dhydro shim: %s\n", g_init_error);
}

static void start_python(void) {
  const char *verbose = getenv("DHYDRO_SHIM_VERBOSE");
  g_verbose = verbose != NULL ? atoi(verbose) : 0;
  promote_libpython();

  int we_started = 0;
  const char *exe = env_or("DHYDRO_PYTHON_EXECUTABLE", DHYDRO_PY_EXECUTABLE);
  const char *home = env_or("DHYDRO_PYTHON_HOME", DHYDRO_PY_HOME);
  if (!Py_IsInitialized()) {
    PyConfig cfg;
    PyConfig_InitPythonConfig(&cfg);
    cfg.install_signal_handlers = 0; /* leave SIGINT etc. to the host */
    cfg.parse_argv = 0;
    cfg.buffered_stdio = 0; /* interleave sensibly with the host's output */
    if (getenv("DHYDRO_SHIM_IGNORE_ENVIRONMENT") != NULL) cfg.use_environment = 0;
    PyStatus st = PyConfig_SetBytesString(&cfg, &cfg.executable, exe);
    if (!PyStatus_Exception(st)) st = PyConfig_SetBytesString(&cfg, &cfg.home, home);
    if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&cfg);
    PyConfig_Clear(&cfg);
    if (PyStatus_Exception(st)) {
      record_init_error("could not start the embedded Python %s (executable %s, home %s): %s%s%s",
                        DHYDRO_PY_VERSION, exe, home, st.func ? st.func : "",
                        st.func ? ": " : "", st.err_msg ? st.err_msg : "unknown error");
      return;
    }
    we_started = 1;
  }

  PyGILState_STATE gs = PyGILState_Ensure();
  int ok = 0;
  /* fallback for an uninstalled source checkout: append the project root to sys.path */
  if (DHYDRO_PY_EXTRA_PATH[0] != '\0') {
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    PyObject *entry = PyUnicode_DecodeFSDefault(DHYDRO_PY_EXTRA_PATH);
    if (path != NULL && entry != NULL && PyList_Check(path)) {
      int has = PySequence_Contains(path, entry);
      if (has == 0) PyList_Append(path, entry);
    }
    Py_XDECREF(entry);
    PyErr_Clear();
  }
  PyObject *code = Py_CompileString(DHYDRO_GLUE_SRC, "dhydro_shim_glue.py", Py_file_input);
  PyObject *mod = code != NULL ? PyImport_ExecCodeModule("_dhydro_shim_glue", code) : NULL;
  Py_XDECREF(code);
  if (mod == NULL) {
    error_from_python("loading the shim's Python glue (imports numpy and ctypes)");
    PyObject *sysexe = PySys_GetObject("executable");
    PyObject *prefix = PySys_GetObject("prefix");
    const char *se = sysexe && PyUnicode_Check(sysexe) ? PyUnicode_AsUTF8(sysexe) : "?";
    const char *sp = prefix && PyUnicode_Check(prefix) ? PyUnicode_AsUTF8(prefix) : "?";
    PyErr_Clear();
    record_init_error("%s [embedded Python: sys.executable=%s, sys.prefix=%s; built for %s]", t_error,
                      se ? se : "?", sp ? sp : "?", DHYDRO_PY_EXECUTABLE);
  } else {
    g_glue = mod;
    ok = 1;
  }
  PyGILState_Release(gs);
  if (we_started) PyEval_SaveThread(); /* release the GIL taken by Py_InitializeFromConfig */
  g_python_ok = ok;
}

/* Clear the error, make sure Python runs. Returns 1 when calls may proceed. */
static int begin(const char *ctx) {
  t_error[0] = '\0';
  pthread_once(&g_once, start_python);
  if (!g_python_ok) {
    set_error("%s: %s", ctx, g_init_error[0] ? g_init_error : "the embedded Python is not available");
    return 0;
  }
  return 1;
}

static int check_model(dhydro_model *m, const char *ctx) {
  if (m == NULL) {
    set_error("%s: the model handle is NULL (create it with dhydro_create / register_bmi + initialize)", ctx);
    return 0;
  }
  if (m->shim == NULL) {
    set_error("%s: the model handle was already destroyed", ctx);
    return 0;
  }
  return 1;
}

static int check_name(const char *name, const char *ctx) {
  if (name == NULL) {
    set_error("%s: the variable name is NULL", ctx);
    return 0;
  }
  return 1;
}

static int check_out(const void *out, const char *ctx, const char *what) {
  if (out == NULL) {
    set_error("%s: the output argument '%s' is NULL", ctx, what);
    return 0;
  }
  return 1;
}

DHYDRO_EXPORT int dhydro_python_init(void) { return begin("dhydro_python_init") ? BMI_SUCCESS : BMI_FAILURE; }

/* ------------------------------------------------------------------------------------------ */
/* result conversion (GIL held on entry, released on exit)                                    */
/* ------------------------------------------------------------------------------------------ */

static int finish_void(PyGILState_STATE gs, PyObject *r, const char *ctx) {
  int rc = BMI_SUCCESS;
  if (r == NULL) {
    error_from_python(ctx);
    rc = BMI_FAILURE;
  }
  Py_XDECREF(r);
  PyGILState_Release(gs);
  return rc;
}

static int finish_int(PyGILState_STATE gs, PyObject *r, const char *ctx, int *out) {
  int rc = BMI_FAILURE;
  if (r == NULL) {
    error_from_python(ctx);
  } else {
    long v = PyLong_AsLong(r);
    if (v == -1 && PyErr_Occurred()) {
      error_from_python(ctx);
    } else if (v < INT_MIN || v > INT_MAX) {
      set_error("%s: value %ld does not fit in a C int", ctx, v);
    } else {
      *out = (int)v;
      rc = BMI_SUCCESS;
    }
  }
  Py_XDECREF(r);
  PyGILState_Release(gs);
  return rc;
}

static int finish_double(PyGILState_STATE gs, PyObject *r, const char *ctx, double *out) {
  int rc = BMI_FAILURE;
  if (r == NULL) {
    error_from_python(ctx);
  } else {
    double v = PyFloat_AsDouble(r);
    if (v == -1.0 && PyErr_Occurred()) {
      error_from_python(ctx);
    } else {
      *out = v;
      rc = BMI_SUCCESS;
    }
  }
  Py_XDECREF(r);
  PyGILState_Release(gs);
  return rc;
}

/* copy a UTF-8 string into a caller buffer of len bytes (len <= 0: BMI_MAX_VAR_NAME) */
static int copy_str(const char *s, char *out, int len, const char *ctx) {
  size_t cap = len > 0 ? (size_t)len : (size_t)BMI_MAX_VAR_NAME;
  size_t n = strlen(s);
  if (n + 1 > cap) {
    set_error("%s: the result '%.80s%s' (%zu bytes) does not fit in the %zu-byte buffer", ctx, s,
              n > 80 ? "..." : "", n, cap);
    return 0;
  }
  memcpy(out, s, n + 1);
  return 1;
}

static int finish_str(PyGILState_STATE gs, PyObject *r, const char *ctx, char *out, int len) {
  int rc = BMI_FAILURE;
  if (r == NULL) {
    error_from_python(ctx);
  } else {
    const char *s = PyUnicode_Check(r) ? PyUnicode_AsUTF8(r) : NULL;
    if (s == NULL) {
      if (PyErr_Occurred())
        error_from_python(ctx);
      else
        set_error("%s: the model returned %s, not a string", ctx, Py_TYPE(r)->tp_name);
    } else if (copy_str(s, out, len, ctx)) {
      rc = BMI_SUCCESS;
    }
  }
  Py_XDECREF(r);
  PyGILState_Release(gs);
  return rc;
}

/* Context strings for messages, e.g. "get_value('runoff')". */
#define CTX_NAME(buf, fn, name) snprintf(buf, sizeof buf, "%s('%.200s')", fn, name ? name : "(null)")
#define CTX_GRID(buf, fn, grid) snprintf(buf, sizeof buf, "%s(grid %d)", fn, grid)

#define ENTER(m, ctx)                                 \
  if (!begin(ctx) || !check_model(m, ctx)) return BMI_FAILURE; \
  PyGILState_STATE gs = PyGILState_Ensure()

#define ADDR(p) PyLong_FromVoidPtr((void *)(p))

/* ------------------------------------------------------------------------------------------ */
/* class choice                                                                               */
/* ------------------------------------------------------------------------------------------ */

DHYDRO_EXPORT int dhydro_set_default_class(const char *class_spec) {
  t_error[0] = '\0';
  if (class_spec != NULL && strlen(class_spec) >= sizeof g_default_class) {
    set_error("dhydro_set_default_class: class spec is longer than %zu bytes", sizeof g_default_class - 1);
    return BMI_FAILURE;
  }
  if (class_spec != NULL && class_spec[0] != '\0' && strchr(class_spec, ':') == NULL) {
    set_error("dhydro_set_default_class: expected 'module:Class' or '/path/file.py:Class', got '%s'", class_spec);
    return BMI_FAILURE;
  }
  pthread_mutex_lock(&g_class_lock);
  snprintf(g_default_class, sizeof g_default_class, "%s", class_spec ? class_spec : "");
  pthread_mutex_unlock(&g_class_lock);
  return BMI_SUCCESS;
}

static void default_class(char *out, size_t cap) {
  pthread_mutex_lock(&g_class_lock);
  const char *spec = g_default_class[0] ? g_default_class
                                        : env_or("DHYDRO_BMI_CLASS", "bmi_dhydro:BmiDeltaModel");
  snprintf(out, cap, "%s", spec);
  pthread_mutex_unlock(&g_class_lock);
}

DHYDRO_EXPORT const char *dhydro_get_default_class(void) {
  default_class(g_default_class_out, sizeof g_default_class_out);
  return g_default_class_out;
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                  */
/* ------------------------------------------------------------------------------------------ */

DHYDRO_EXPORT int dhydro_create(const char *class_spec, dhydro_model **model) {
  char spec[1024], ctx[1200];
  if (class_spec != NULL && class_spec[0] != '\0')
    snprintf(spec, sizeof spec, "%s", class_spec);
  else
    default_class(spec, sizeof spec);
  snprintf(ctx, sizeof ctx, "create('%s')", spec);
  if (!begin(ctx)) return BMI_FAILURE;
  if (!check_out(model, ctx, "model")) return BMI_FAILURE;
  *model = NULL;
  dhydro_model *m = calloc(1, sizeof *m);
  if (m == NULL) {
    set_error("%s: out of memory", ctx);
    return BMI_FAILURE;
  }
  PyGILState_STATE gs = PyGILState_Ensure();
  PyObject *shim = PyObject_CallMethod(g_glue, "Shim", "s", spec);
  if (shim == NULL) {
    error_from_python(ctx);
    PyGILState_Release(gs);
    free(m);
    return BMI_FAILURE;
  }
  PyGILState_Release(gs);
  m->shim = shim;
  *model = m;
  return BMI_SUCCESS;
}

/* Does not clear the last error, so a host can destroy a model whose initialize failed and
 * still read why. */
DHYDRO_EXPORT int dhydro_destroy(dhydro_model *m) {
  if (m == NULL) return BMI_SUCCESS;
  if (m->shim != NULL && g_python_ok) {
    PyGILState_STATE gs = PyGILState_Ensure();
    Py_CLEAR(m->shim);
    PyGILState_Release(gs);
  }
  free(m);
  return BMI_SUCCESS;
}

DHYDRO_EXPORT int dhydro_initialize(dhydro_model *m, const char *config_file) {
  char ctx[1200];
  snprintf(ctx, sizeof ctx, "initialize('%.1000s')", config_file ? config_file : "(null)");
  ENTER(m, ctx);
  PyObject *r = config_file != NULL ? PyObject_CallMethod(m->shim, "initialize", "s", config_file)
                                    : PyObject_CallMethod(m->shim, "initialize", "O", Py_None);
  return finish_void(gs, r, ctx);
}

DHYDRO_EXPORT int dhydro_update(dhydro_model *m) {
  ENTER(m, "update");
  return finish_void(gs, PyObject_CallMethod(m->shim, "update", NULL), "update");
}

DHYDRO_EXPORT int dhydro_update_until(dhydro_model *m, double then) {
  char ctx[64];
  snprintf(ctx, sizeof ctx, "update_until(%.17g)", then);
  ENTER(m, ctx);
  return finish_void(gs, PyObject_CallMethod(m->shim, "update_until", "d", then), ctx);
}

DHYDRO_EXPORT int dhydro_finalize(dhydro_model *m) {
  ENTER(m, "finalize");
  return finish_void(gs, PyObject_CallMethod(m->shim, "finalize", NULL), "finalize");
}

/* ------------------------------------------------------------------------------------------ */
/* exchange items                                                                             */
/* ------------------------------------------------------------------------------------------ */

DHYDRO_EXPORT int dhydro_get_component_name(dhydro_model *m, char *name, int len) {
  const char *ctx = "get_component_name";
  if (!check_out(name, ctx, "name")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, "component_name", NULL), ctx, name, len);
}

DHYDRO_EXPORT int dhydro_get_input_item_count(dhydro_model *m, int *count) {
  const char *ctx = "get_input_item_count";
  if (!check_out(count, ctx, "count")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_int(gs, PyObject_CallMethod(m->shim, "input_count", NULL), ctx, count);
}

DHYDRO_EXPORT int dhydro_get_output_item_count(dhydro_model *m, int *count) {
  const char *ctx = "get_output_item_count";
  if (!check_out(count, ctx, "count")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_int(gs, PyObject_CallMethod(m->shim, "output_count", NULL), ctx, count);
}

DHYDRO_EXPORT int dhydro_get_input_var_name(dhydro_model *m, int index, char *name, int len) {
  const char *ctx = "get_input_var_name";
  if (!check_out(name, ctx, "name")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, "input_name", "i", index), ctx, name, len);
}

DHYDRO_EXPORT int dhydro_get_output_var_name(dhydro_model *m, int index, char *name, int len) {
  const char *ctx = "get_output_var_name";
  if (!check_out(name, ctx, "name")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, "output_name", "i", index), ctx, name, len);
}

static int copy_names(dhydro_model *m, const char *method, const char *ctx, char **names, int len) {
  if (!check_out(names, ctx, "names")) return BMI_FAILURE;
  ENTER(m, ctx);
  int rc = BMI_FAILURE;
  PyObject *list = PyObject_CallMethod(m->shim, method, NULL);
  if (list == NULL) {
    error_from_python(ctx);
  } else {
    Py_ssize_t n = PyList_Size(list);
    rc = BMI_SUCCESS;
    for (Py_ssize_t i = 0; i < n && rc == BMI_SUCCESS; i++) {
      const char *s = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
      if (s == NULL) {
        error_from_python(ctx);
        rc = BMI_FAILURE;
      } else if (names[i] == NULL) {
        set_error("%s: names[%zd] is NULL; allocate one buffer per variable", ctx, i);
        rc = BMI_FAILURE;
      } else if (!copy_str(s, names[i], len, ctx)) {
        rc = BMI_FAILURE;
      }
    }
  }
  Py_XDECREF(list);
  PyGILState_Release(gs);
  return rc;
}

DHYDRO_EXPORT int dhydro_get_input_var_names(dhydro_model *m, char **names, int len) {
  return copy_names(m, "input_names", "get_input_var_names", names, len);
}

DHYDRO_EXPORT int dhydro_get_output_var_names(dhydro_model *m, char **names, int len) {
  return copy_names(m, "output_names", "get_output_var_names", names, len);
}

/* ------------------------------------------------------------------------------------------ */
/* variable information                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int var_int(dhydro_model *m, const char *fn, const char *method, const char *name, int *out) {
  char ctx[300];
  CTX_NAME(ctx, fn, name);
  if (!check_name(name, ctx) || !check_out(out, ctx, "result")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_int(gs, PyObject_CallMethod(m->shim, method, "s", name), ctx, out);
}

static int var_str(dhydro_model *m, const char *fn, const char *method, const char *name, char *out,
                   int len) {
  char ctx[300];
  CTX_NAME(ctx, fn, name);
  if (!check_name(name, ctx) || !check_out(out, ctx, "result")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, method, "s", name), ctx, out, len);
}

DHYDRO_EXPORT int dhydro_get_var_grid(dhydro_model *m, const char *name, int *grid) {
  return var_int(m, "get_var_grid", "var_grid", name, grid);
}
DHYDRO_EXPORT int dhydro_get_var_itemsize(dhydro_model *m, const char *name, int *size) {
  return var_int(m, "get_var_itemsize", "var_itemsize", name, size);
}
DHYDRO_EXPORT int dhydro_get_var_nbytes(dhydro_model *m, const char *name, int *nbytes) {
  return var_int(m, "get_var_nbytes", "var_nbytes", name, nbytes);
}
DHYDRO_EXPORT int dhydro_get_var_count(dhydro_model *m, const char *name, int *count) {
  return var_int(m, "get_var_count", "var_count", name, count);
}
DHYDRO_EXPORT int dhydro_get_var_type(dhydro_model *m, const char *name, char *type, int len) {
  return var_str(m, "get_var_type", "var_c_type", name, type, len);
}
DHYDRO_EXPORT int dhydro_get_var_dtype(dhydro_model *m, const char *name, char *dtype, int len) {
  return var_str(m, "get_var_dtype", "var_dtype", name, dtype, len);
}
DHYDRO_EXPORT int dhydro_get_var_units(dhydro_model *m, const char *name, char *units, int len) {
  return var_str(m, "get_var_units", "var_units", name, units, len);
}
DHYDRO_EXPORT int dhydro_get_var_location(dhydro_model *m, const char *name, char *location, int len) {
  return var_str(m, "get_var_location", "var_location", name, location, len);
}

/* ------------------------------------------------------------------------------------------ */
/* time                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int time_value(dhydro_model *m, const char *ctx, const char *method, double *out) {
  if (!check_out(out, ctx, "time")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_double(gs, PyObject_CallMethod(m->shim, method, NULL), ctx, out);
}

DHYDRO_EXPORT int dhydro_get_current_time(dhydro_model *m, double *t) {
  return time_value(m, "get_current_time", "current_time", t);
}
DHYDRO_EXPORT int dhydro_get_start_time(dhydro_model *m, double *t) {
  return time_value(m, "get_start_time", "start_time", t);
}
DHYDRO_EXPORT int dhydro_get_end_time(dhydro_model *m, double *t) {
  return time_value(m, "get_end_time", "end_time", t);
}
DHYDRO_EXPORT int dhydro_get_time_step(dhydro_model *m, double *t) {
  return time_value(m, "get_time_step", "time_step", t);
}
DHYDRO_EXPORT int dhydro_get_time_units(dhydro_model *m, char *units, int len) {
  const char *ctx = "get_time_units";
  if (!check_out(units, ctx, "units")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, "time_units", NULL), ctx, units, len);
}

/* ------------------------------------------------------------------------------------------ */
/* values                                                                                     */
/* ------------------------------------------------------------------------------------------ */

DHYDRO_EXPORT int dhydro_get_value(dhydro_model *m, const char *name, void *dest, int count,
                                   const char *dtype) {
  char ctx[300];
  CTX_NAME(ctx, "get_value", name);
  if (!check_name(name, ctx)) return BMI_FAILURE;
  ENTER(m, ctx);
  PyObject *r = PyObject_CallMethod(m->shim, "get_value", "sNiz", name, ADDR(dest), count, dtype);
  return finish_void(gs, r, ctx);
}

DHYDRO_EXPORT int dhydro_get_value_ptr(dhydro_model *m, const char *name, void **ptr, int *count,
                                       const char *dtype) {
  char ctx[300];
  CTX_NAME(ctx, "get_value_ptr", name);
  if (!check_name(name, ctx) || !check_out(ptr, ctx, "ptr")) return BMI_FAILURE;
  ENTER(m, ctx);
  int rc = BMI_FAILURE;
  PyObject *r = PyObject_CallMethod(m->shim, "get_value_ptr", "sz", name, dtype);
  if (r == NULL) {
    error_from_python(ctx);
  } else {
    PyObject *addr = NULL;
    int n = 0;
    if (!PyArg_ParseTuple(r, "Oi", &addr, &n)) {
      error_from_python(ctx);
    } else {
      void *p = PyLong_AsVoidPtr(addr);
      if (p == NULL && PyErr_Occurred()) {
        error_from_python(ctx);
      } else {
        *ptr = p;
        if (count != NULL) *count = n;
        rc = BMI_SUCCESS;
      }
    }
  }
  Py_XDECREF(r);
  PyGILState_Release(gs);
  return rc;
}

DHYDRO_EXPORT int dhydro_get_value_at_indices(dhydro_model *m, const char *name, void *dest,
                                              const int *inds, int count, const char *dtype) {
  char ctx[300];
  CTX_NAME(ctx, "get_value_at_indices", name);
  if (!check_name(name, ctx)) return BMI_FAILURE;
  ENTER(m, ctx);
  PyObject *r = PyObject_CallMethod(m->shim, "get_value_at_indices", "sNNiz", name, ADDR(dest),
                                    ADDR(inds), count, dtype);
  return finish_void(gs, r, ctx);
}

DHYDRO_EXPORT int dhydro_set_value(dhydro_model *m, const char *name, const void *src, int count,
                                   const char *dtype) {
  char ctx[300];
  CTX_NAME(ctx, "set_value", name);
  if (!check_name(name, ctx)) return BMI_FAILURE;
  ENTER(m, ctx);
  PyObject *r = PyObject_CallMethod(m->shim, "set_value", "sNiz", name, ADDR(src), count, dtype);
  return finish_void(gs, r, ctx);
}

DHYDRO_EXPORT int dhydro_set_value_at_indices(dhydro_model *m, const char *name, const int *inds,
                                              int count, const void *src, const char *dtype) {
  char ctx[300];
  CTX_NAME(ctx, "set_value_at_indices", name);
  if (!check_name(name, ctx)) return BMI_FAILURE;
  ENTER(m, ctx);
  PyObject *r = PyObject_CallMethod(m->shim, "set_value_at_indices", "sNiNz", name, ADDR(inds), count,
                                    ADDR(src), dtype);
  return finish_void(gs, r, ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* grids                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static int grid_int(dhydro_model *m, const char *what, int grid, int *out) {
  char ctx[96], fn[48];
  snprintf(fn, sizeof fn, "get_grid_%s", what);
  CTX_GRID(ctx, fn, grid);
  if (!check_out(out, ctx, "result")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_int(gs, PyObject_CallMethod(m->shim, "grid_int", "si", what, grid), ctx, out);
}

static int grid_array(dhydro_model *m, const char *what, int grid, void *out, int count) {
  char ctx[96], fn[48];
  snprintf(fn, sizeof fn, "get_grid_%s", what);
  CTX_GRID(ctx, fn, grid);
  if (!check_out(out, ctx, what)) return BMI_FAILURE;
  ENTER(m, ctx);
  PyObject *r = PyObject_CallMethod(m->shim, "grid_array", "siNi", what, grid, ADDR(out), count);
  return finish_void(gs, r, ctx);
}

DHYDRO_EXPORT int dhydro_get_grid_rank(dhydro_model *m, int grid, int *rank) {
  return grid_int(m, "rank", grid, rank);
}
DHYDRO_EXPORT int dhydro_get_grid_size(dhydro_model *m, int grid, int *size) {
  return grid_int(m, "size", grid, size);
}
DHYDRO_EXPORT int dhydro_get_grid_node_count(dhydro_model *m, int grid, int *count) {
  return grid_int(m, "node_count", grid, count);
}
DHYDRO_EXPORT int dhydro_get_grid_edge_count(dhydro_model *m, int grid, int *count) {
  return grid_int(m, "edge_count", grid, count);
}
DHYDRO_EXPORT int dhydro_get_grid_face_count(dhydro_model *m, int grid, int *count) {
  return grid_int(m, "face_count", grid, count);
}
DHYDRO_EXPORT int dhydro_get_grid_type(dhydro_model *m, int grid, char *type, int len) {
  char ctx[64];
  CTX_GRID(ctx, "get_grid_type", grid);
  if (!check_out(type, ctx, "type")) return BMI_FAILURE;
  ENTER(m, ctx);
  return finish_str(gs, PyObject_CallMethod(m->shim, "grid_type", "i", grid), ctx, type, len);
}
DHYDRO_EXPORT int dhydro_get_grid_shape(dhydro_model *m, int grid, int *shape, int count) {
  return grid_array(m, "shape", grid, shape, count);
}
DHYDRO_EXPORT int dhydro_get_grid_spacing(dhydro_model *m, int grid, double *spacing, int count) {
  return grid_array(m, "spacing", grid, spacing, count);
}
DHYDRO_EXPORT int dhydro_get_grid_origin(dhydro_model *m, int grid, double *origin, int count) {
  return grid_array(m, "origin", grid, origin, count);
}
DHYDRO_EXPORT int dhydro_get_grid_x(dhydro_model *m, int grid, double *x, int count) {
  return grid_array(m, "x", grid, x, count);
}
DHYDRO_EXPORT int dhydro_get_grid_y(dhydro_model *m, int grid, double *y, int count) {
  return grid_array(m, "y", grid, y, count);
}
DHYDRO_EXPORT int dhydro_get_grid_z(dhydro_model *m, int grid, double *z, int count) {
  return grid_array(m, "z", grid, z, count);
}
DHYDRO_EXPORT int dhydro_get_grid_edge_nodes(dhydro_model *m, int grid, int *edge_nodes, int count) {
  return grid_array(m, "edge_nodes", grid, edge_nodes, count);
}
DHYDRO_EXPORT int dhydro_get_grid_face_edges(dhydro_model *m, int grid, int *face_edges, int count) {
  return grid_array(m, "face_edges", grid, face_edges, count);
}
DHYDRO_EXPORT int dhydro_get_grid_face_nodes(dhydro_model *m, int grid, int *face_nodes, int count) {
  return grid_array(m, "face_nodes", grid, face_nodes, count);
}
DHYDRO_EXPORT int dhydro_get_grid_nodes_per_face(dhydro_model *m, int grid, int *nodes_per_face, int count) {
  return grid_array(m, "nodes_per_face", grid, nodes_per_face, count);
}

/* ------------------------------------------------------------------------------------------ */
/* the CSDMS C BMI struct                                                                     */
/* ------------------------------------------------------------------------------------------ */

#define M(self) ((self) != NULL ? (dhydro_model *)(self)->data : NULL)

static int bmi_initialize(Bmi *self, const char *config_file) {
  if (self == NULL) {
    set_error("initialize: the Bmi struct pointer is NULL");
    return BMI_FAILURE;
  }
  if (self->data == NULL) {
    dhydro_model *m = NULL;
    if (dhydro_create(NULL, &m) != BMI_SUCCESS) {
      /* ngen shows no library messages; start-up failures were printed already */
      if (g_python_ok && !g_verbose) fprintf(stderr, "bmi_dhydro shim: %s\n", t_error);
      return BMI_FAILURE;
    }
    self->data = m;
  }
  int rc = dhydro_initialize(M(self), config_file);
  if (rc != BMI_SUCCESS && !g_verbose) fprintf(stderr, "bmi_dhydro shim: %s\n", t_error);
  return rc;
}

static int bmi_update(Bmi *self) { return dhydro_update(M(self)); }
static int bmi_update_until(Bmi *self, double then) { return dhydro_update_until(M(self), then); }

static int bmi_finalize(Bmi *self) {
  if (self == NULL || self->data == NULL) return BMI_SUCCESS; /* nothing to tear down */
  int rc = dhydro_finalize(M(self));
  dhydro_destroy(M(self));
  self->data = NULL;
  return rc;
}

static int bmi_get_component_name(Bmi *self, char *name) {
  return dhydro_get_component_name(M(self), name, BMI_MAX_COMPONENT_NAME);
}
static int bmi_get_input_item_count(Bmi *self, int *count) { return dhydro_get_input_item_count(M(self), count); }
static int bmi_get_output_item_count(Bmi *self, int *count) { return dhydro_get_output_item_count(M(self), count); }
static int bmi_get_input_var_names(Bmi *self, char **names) {
  return dhydro_get_input_var_names(M(self), names, BMI_MAX_VAR_NAME);
}
static int bmi_get_output_var_names(Bmi *self, char **names) {
  return dhydro_get_output_var_names(M(self), names, BMI_MAX_VAR_NAME);
}
static int bmi_get_var_grid(Bmi *self, const char *name, int *grid) { return dhydro_get_var_grid(M(self), name, grid); }
static int bmi_get_var_type(Bmi *self, const char *name, char *type) {
  return dhydro_get_var_type(M(self), name, type, BMI_MAX_TYPE_NAME);
}
static int bmi_get_var_units(Bmi *self, const char *name, char *units) {
  return dhydro_get_var_units(M(self), name, units, BMI_MAX_UNITS_NAME);
}
static int bmi_get_var_itemsize(Bmi *self, const char *name, int *size) {
  return dhydro_get_var_itemsize(M(self), name, size);
}
static int bmi_get_var_nbytes(Bmi *self, const char *name, int *nbytes) {
  return dhydro_get_var_nbytes(M(self), name, nbytes);
}
static int bmi_get_var_location(Bmi *self, const char *name, char *location) {
  return dhydro_get_var_location(M(self), name, location, BMI_MAX_LOCATION_NAME);
}
static int bmi_get_current_time(Bmi *self, double *t) { return dhydro_get_current_time(M(self), t); }
static int bmi_get_start_time(Bmi *self, double *t) { return dhydro_get_start_time(M(self), t); }
static int bmi_get_end_time(Bmi *self, double *t) { return dhydro_get_end_time(M(self), t); }
static int bmi_get_time_units(Bmi *self, char *units) {
  return dhydro_get_time_units(M(self), units, BMI_MAX_UNITS_NAME);
}
static int bmi_get_time_step(Bmi *self, double *dt) { return dhydro_get_time_step(M(self), dt); }
static int bmi_get_value(Bmi *self, const char *name, void *dest) {
  return dhydro_get_value(M(self), name, dest, -1, NULL);
}
static int bmi_get_value_ptr(Bmi *self, const char *name, void **dest_ptr) {
  return dhydro_get_value_ptr(M(self), name, dest_ptr, NULL, NULL);
}
static int bmi_get_value_at_indices(Bmi *self, const char *name, void *dest, int *inds, int count) {
  return dhydro_get_value_at_indices(M(self), name, dest, inds, count, NULL);
}
static int bmi_set_value(Bmi *self, const char *name, void *src) {
  return dhydro_set_value(M(self), name, src, -1, NULL);
}
static int bmi_set_value_at_indices(Bmi *self, const char *name, int *inds, int count, void *src) {
  return dhydro_set_value_at_indices(M(self), name, inds, count, src, NULL);
}
static int bmi_get_grid_rank(Bmi *self, int grid, int *rank) { return dhydro_get_grid_rank(M(self), grid, rank); }
static int bmi_get_grid_size(Bmi *self, int grid, int *size) { return dhydro_get_grid_size(M(self), grid, size); }
static int bmi_get_grid_type(Bmi *self, int grid, char *type) {
  return dhydro_get_grid_type(M(self), grid, type, BMI_MAX_TYPE_NAME);
}
static int bmi_get_grid_shape(Bmi *self, int grid, int *shape) { return dhydro_get_grid_shape(M(self), grid, shape, -1); }
static int bmi_get_grid_spacing(Bmi *self, int grid, double *spacing) {
  return dhydro_get_grid_spacing(M(self), grid, spacing, -1);
}
static int bmi_get_grid_origin(Bmi *self, int grid, double *origin) {
  return dhydro_get_grid_origin(M(self), grid, origin, -1);
}
static int bmi_get_grid_x(Bmi *self, int grid, double *x) { return dhydro_get_grid_x(M(self), grid, x, -1); }
static int bmi_get_grid_y(Bmi *self, int grid, double *y) { return dhydro_get_grid_y(M(self), grid, y, -1); }
static int bmi_get_grid_z(Bmi *self, int grid, double *z) { return dhydro_get_grid_z(M(self), grid, z, -1); }
static int bmi_get_grid_node_count(Bmi *self, int grid, int *count) {
  return dhydro_get_grid_node_count(M(self), grid, count);
}
static int bmi_get_grid_edge_count(Bmi *self, int grid, int *count) {
  return dhydro_get_grid_edge_count(M(self), grid, count);
}
static int bmi_get_grid_face_count(Bmi *self, int grid, int *count) {
  return dhydro_get_grid_face_count(M(self), grid, count);
}
static int bmi_get_grid_edge_nodes(Bmi *self, int grid, int *edge_nodes) {
  return dhydro_get_grid_edge_nodes(M(self), grid, edge_nodes, -1);
}
static int bmi_get_grid_face_edges(Bmi *self, int grid, int *face_edges) {
  return dhydro_get_grid_face_edges(M(self), grid, face_edges, -1);
}
static int bmi_get_grid_face_nodes(Bmi *self, int grid, int *face_nodes) {
  return dhydro_get_grid_face_nodes(M(self), grid, face_nodes, -1);
}
static int bmi_get_grid_nodes_per_face(Bmi *self, int grid, int *nodes_per_face) {
  return dhydro_get_grid_nodes_per_face(M(self), grid, nodes_per_face, -1);
}

DHYDRO_EXPORT Bmi *register_bmi(Bmi *model) {
  if (model == NULL) return NULL;
  model->data = NULL; /* the Python model is created by initialize() */
  model->initialize = bmi_initialize;
  model->update = bmi_update;
  model->update_until = bmi_update_until;
  model->finalize = bmi_finalize;
  model->get_component_name = bmi_get_component_name;
  model->get_input_item_count = bmi_get_input_item_count;
  model->get_output_item_count = bmi_get_output_item_count;
  model->get_input_var_names = bmi_get_input_var_names;
  model->get_output_var_names = bmi_get_output_var_names;
  model->get_var_grid = bmi_get_var_grid;
  model->get_var_type = bmi_get_var_type;
  model->get_var_units = bmi_get_var_units;
  model->get_var_itemsize = bmi_get_var_itemsize;
  model->get_var_nbytes = bmi_get_var_nbytes;
  model->get_var_location = bmi_get_var_location;
  model->get_current_time = bmi_get_current_time;
  model->get_start_time = bmi_get_start_time;
  model->get_end_time = bmi_get_end_time;
  model->get_time_units = bmi_get_time_units;
  model->get_time_step = bmi_get_time_step;
  model->get_value = bmi_get_value;
  model->get_value_ptr = bmi_get_value_ptr;
  model->get_value_at_indices = bmi_get_value_at_indices;
  model->set_value = bmi_set_value;
  model->set_value_at_indices = bmi_set_value_at_indices;
  model->get_grid_rank = bmi_get_grid_rank;
  model->get_grid_size = bmi_get_grid_size;
  model->get_grid_type = bmi_get_grid_type;
  model->get_grid_shape = bmi_get_grid_shape;
  model->get_grid_spacing = bmi_get_grid_spacing;
  model->get_grid_origin = bmi_get_grid_origin;
  model->get_grid_x = bmi_get_grid_x;
  model->get_grid_y = bmi_get_grid_y;
  model->get_grid_z = bmi_get_grid_z;
  model->get_grid_node_count = bmi_get_grid_node_count;
  model->get_grid_edge_count = bmi_get_grid_edge_count;
  model->get_grid_face_count = bmi_get_grid_face_count;
  model->get_grid_edge_nodes = bmi_get_grid_edge_nodes;
  model->get_grid_face_edges = bmi_get_grid_face_edges;
  model->get_grid_face_nodes = bmi_get_grid_face_nodes;
  model->get_grid_nodes_per_face = bmi_get_grid_nodes_per_face;
  return model;
}

DHYDRO_EXPORT Bmi *register_bmi_dhydro(Bmi *model) { return register_bmi(model); }
