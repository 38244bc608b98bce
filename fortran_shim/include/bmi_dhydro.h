/*
 * bmi_dhydro.h -- C API of libbmi_dhydro.so, the C/Fortran shim over a Python BMI model.
 *
 * The library embeds CPython (started once per process on first use, never finalised; an
 * interpreter the host already started is reused) and wraps a Python BMI class chosen by a
 * "module:Class" (or "/path/file.py:Class") string. It offers two interfaces:
 *
 *  1. the CSDMS BMI 2.0 C struct (bmi.h), filled by register_bmi() -- what NOAA NextGen's
 *     Bmi_C_Adapter loads (dlopen RTLD_LOCAL + dlsym "register_bmi");
 *  2. the handle-based functions below (dhydro_*), used by the Fortran module bmi_dhydro and
 *     usable from any language with a C FFI.
 *
 * Every function returns BMI_SUCCESS (0) or BMI_FAILURE (1). A failure -- including any Python
 * exception -- stores a message for the calling thread, retrievable with dhydro_last_error();
 * each call clears it first. The GIL is taken on every call, so any thread may call.
 *
 * Class choice, first that applies: the class_spec argument of dhydro_create(); the value set
 * by dhydro_set_default_class(); the environment variable DHYDRO_BMI_CLASS;
 * "bmi_dhydro:BmiDeltaModel".
 *
 * Environment variables read at start-up (all optional):
 *   DHYDRO_PYTHON_EXECUTABLE  python of the environment to use (default: the one the library was
 *                             built with, e.g. <venv>/bin/python); same Python version required
 *   DHYDRO_PYTHON_HOME        its base installation (PYTHONHOME; default: baked at build time)
 *   DHYDRO_SHIM_VERBOSE       1: print each failure message to stderr; 2: with Python tracebacks
 *   DHYDRO_SHIM_IGNORE_ENVIRONMENT  non-empty: ignore PYTHON* variables (PYTHONPATH, ...)
 *
 * Variable buffers: `count` is the number of items in the caller's buffer (checked against the
 * variable's size; -1 = "trust me, it holds the whole variable" as in the BMI C struct) and
 * `dtype` the buffer's numpy type name ("float64", "float32", "int32", "int64"; NULL = the
 * variable's own type). Only exact conversions happen: widening ones (float32 -> float64,
 * int32 -> float64, ...) and integer narrowing when every value fits (int64 -> int32); anything
 * else (e.g. float64 -> float32) is refused with a message. Indices are 0-based.
 */
#ifndef BMI_DHYDRO_H
#define BMI_DHYDRO_H

#include "bmi.h"

#if defined(__cplusplus)
extern "C" {
#endif

#define DHYDRO_MAX_ERROR (8192)

typedef struct dhydro_model dhydro_model;

/* ---- the CSDMS C BMI entry point (NextGen) -------------------------------------------- */
Bmi *register_bmi(Bmi *model);
Bmi *register_bmi_dhydro(Bmi *model); /* same, under a name unlikely to clash */

/* ---- process-wide --------------------------------------------------------------------- */
const char *dhydro_shim_version(void);
/* Start the embedded interpreter now (otherwise the first call does). */
int dhydro_python_init(void);
/* Default "module:Class" for dhydro_create(NULL, ...) and register_bmi; NULL or "" resets. */
int dhydro_set_default_class(const char *class_spec);
/* The default in force: set value, else $DHYDRO_BMI_CLASS, else the built-in one. */
const char *dhydro_get_default_class(void);
/* Last failure message of this thread ("" after a successful call). */
const char *dhydro_last_error(void);
/* Copies it into buf (NUL-terminated, truncated to buflen-1); returns its full length. */
int dhydro_copy_last_error(char *buf, int buflen);
void dhydro_clear_error(void);
/* Store a message as this thread's last error (for wrappers validating their own arguments). */
void dhydro_set_last_error(const char *message);

/* ---- lifecycle ------------------------------------------------------------------------ */
int dhydro_create(const char *class_spec, dhydro_model **model);
int dhydro_destroy(dhydro_model *model); /* drop the Python object; NULL is a no-op */
int dhydro_initialize(dhydro_model *model, const char *config_file);
int dhydro_update(dhydro_model *model);
int dhydro_update_until(dhydro_model *model, double then);
int dhydro_finalize(dhydro_model *model);

/* ---- exchange items (string buffers hold `len` bytes including the NUL) --------------- */
int dhydro_get_component_name(dhydro_model *model, char *name, int len);
int dhydro_get_input_item_count(dhydro_model *model, int *count);
int dhydro_get_output_item_count(dhydro_model *model, int *count);
int dhydro_get_input_var_name(dhydro_model *model, int index, char *name, int len);
int dhydro_get_output_var_name(dhydro_model *model, int index, char *name, int len);
int dhydro_get_input_var_names(dhydro_model *model, char **names, int len);
int dhydro_get_output_var_names(dhydro_model *model, char **names, int len);

/* ---- variable information ------------------------------------------------------------- */
int dhydro_get_var_grid(dhydro_model *model, const char *name, int *grid);
int dhydro_get_var_type(dhydro_model *model, const char *name, char *type, int len);   /* C name, "double" */
int dhydro_get_var_dtype(dhydro_model *model, const char *name, char *dtype, int len); /* "float64" */
int dhydro_get_var_units(dhydro_model *model, const char *name, char *units, int len);
int dhydro_get_var_itemsize(dhydro_model *model, const char *name, int *size);
int dhydro_get_var_nbytes(dhydro_model *model, const char *name, int *nbytes);
int dhydro_get_var_count(dhydro_model *model, const char *name, int *count); /* nbytes/itemsize */
int dhydro_get_var_location(dhydro_model *model, const char *name, char *location, int len);

/* ---- time ----------------------------------------------------------------------------- */
int dhydro_get_current_time(dhydro_model *model, double *time);
int dhydro_get_start_time(dhydro_model *model, double *time);
int dhydro_get_end_time(dhydro_model *model, double *time);
int dhydro_get_time_step(dhydro_model *model, double *time_step);
int dhydro_get_time_units(dhydro_model *model, char *units, int len);

/* ---- values --------------------------------------------------------------------------- */
int dhydro_get_value(dhydro_model *model, const char *name, void *dest, int count, const char *dtype);
/* Pointer to the model's live buffer (no copy), valid until finalize. `count` (may be NULL)
 * receives the item count; `dtype` (may be NULL) must equal the variable's type if given. */
int dhydro_get_value_ptr(dhydro_model *model, const char *name, void **ptr, int *count, const char *dtype);
int dhydro_get_value_at_indices(dhydro_model *model, const char *name, void *dest, const int *inds,
                                int count, const char *dtype);
int dhydro_set_value(dhydro_model *model, const char *name, const void *src, int count, const char *dtype);
int dhydro_set_value_at_indices(dhydro_model *model, const char *name, const int *inds, int count,
                                const void *src, const char *dtype);

/* ---- grids (array outputs: `count` items in the buffer, -1 = unchecked) ---------------- */
int dhydro_get_grid_rank(dhydro_model *model, int grid, int *rank);
int dhydro_get_grid_size(dhydro_model *model, int grid, int *size);
int dhydro_get_grid_type(dhydro_model *model, int grid, char *type, int len);
int dhydro_get_grid_shape(dhydro_model *model, int grid, int *shape, int count);
int dhydro_get_grid_spacing(dhydro_model *model, int grid, double *spacing, int count);
int dhydro_get_grid_origin(dhydro_model *model, int grid, double *origin, int count);
int dhydro_get_grid_x(dhydro_model *model, int grid, double *x, int count);
int dhydro_get_grid_y(dhydro_model *model, int grid, double *y, int count);
int dhydro_get_grid_z(dhydro_model *model, int grid, double *z, int count);
int dhydro_get_grid_node_count(dhydro_model *model, int grid, int *count);
int dhydro_get_grid_edge_count(dhydro_model *model, int grid, int *count);
int dhydro_get_grid_face_count(dhydro_model *model, int grid, int *count);
int dhydro_get_grid_edge_nodes(dhydro_model *model, int grid, int *edge_nodes, int count);
int dhydro_get_grid_face_edges(dhydro_model *model, int grid, int *face_edges, int count);
int dhydro_get_grid_face_nodes(dhydro_model *model, int grid, int *face_nodes, int count);
int dhydro_get_grid_nodes_per_face(dhydro_model *model, int grid, int *nodes_per_face, int count);

#if defined(__cplusplus)
}
#endif

#endif /* BMI_DHYDRO_H */
