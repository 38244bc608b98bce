! driver_errors -- error paths of the Fortran layer (tests/test_fortran_shim.py checks the output).
!
!   driver_errors CONFIG
!
! CONFIG must be a valid config of a model with a float64 output land_surface_water__runoff_depth
! and float64 inputs for precipitation and air temperature (bmi_dhydro.BmiDeltaModel). For every
! check one line "name|status|last error message" is printed; the Python test asserts on them.
program driver_errors
  use bmif_2_0
  use bmi_dhydro
  implicit none

  character(len=*), parameter :: V_PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
  character(len=*), parameter :: V_RUNOFF = "land_surface_water__runoff_depth"
  character(len=*), parameter :: V_UNKNOWN = "no_such_variable"

  type(bmi_dhydro_model) :: model, other
  character(len=4096) :: config
  character(len=BMI_MAX_UNITS_NAME) :: units
  integer :: n, nbytes, itemsize
  double precision, allocatable :: d(:), big(:), small(:)
  real, allocatable :: r(:)
  double precision, pointer :: dp(:) => null()
  integer, pointer :: ip(:) => null()
  double precision :: one(1), two(2)

  call get_command_argument(1, config)

  ! before initialize
  call report("update_before_initialize", model%update())
  call report("get_value_ptr_before_initialize", model%get_value_ptr(V_RUNOFF, dp))

  ! a config path that does not exist
  call report("bad_config_path", model%initialize("/nonexistent/dir/no_such_config.yaml"))
  call report("bad_config_is_not_initialized", merge(1, 0, model%is_initialized()))

  ! a Python class that cannot be imported, and a malformed class spec
  call report("bad_class", other%initialize_with_class(trim(config), "no_such_module_xyz:Model"))
  call report("malformed_class_spec", bmi_dhydro_set_default_class("no colon here"))

  ! a good model
  call report("initialize", model%initialize(trim(config)))
  call report("get_var_nbytes", model%get_var_nbytes(V_RUNOFF, nbytes))
  call report("get_var_itemsize", model%get_var_itemsize(V_RUNOFF, itemsize))
  n = nbytes / itemsize
  allocate(d(n), big(n + 1), small(max(n - 1, 0)), r(n))

  ! unknown variables
  call report("unknown_get_value", model%get_value(V_UNKNOWN, d))
  call report("unknown_get_value_ptr", model%get_value_ptr(V_UNKNOWN, dp))
  call report("unknown_set_value", model%set_value(V_UNKNOWN, d))
  call report("unknown_get_var_units", model%get_var_units(V_UNKNOWN, units))

  ! wrong-size arrays
  call report("wrong_size_get_value", model%get_value(V_RUNOFF, big))
  call report("wrong_size_set_value", model%set_value(V_PRECIP, small))
  call report("wrong_size_indices", model%get_value_at_indices(V_RUNOFF, two, [1]))

  ! wrong types and bad indices
  call report("wrong_type_get_value_float", model%get_value(V_RUNOFF, r))
  call report("wrong_type_get_value_ptr_int", model%get_value_ptr(V_RUNOFF, ip))
  call report("index_out_of_range", model%get_value_at_indices(V_RUNOFF, one, [n + 1]))

  ! the model raises: no forcing was set, so the air temperature is NaN
  call report("update_without_forcing", model%update())

  ! a good call afterwards succeeds and clears the message
  call report("good_call_after_errors", model%get_value(V_RUNOFF, d))

  call report("finalize", model%finalize())
  call report("get_value_after_finalize", model%get_value(V_RUNOFF, d))

contains

  subroutine report(name, status)
    character(len=*), intent(in) :: name
    integer, intent(in) :: status
    write (*, '(a,a,i0,a,a)') name, "|", status, "|", bmi_dhydro_last_error()
  end subroutine report

end program driver_errors
