! bmi_dhydro -- a Fortran BMI 2.0 component (type bmi_dhydro_model, extends bmif_2_0's bmi) that
! runs the Python model through libbmi_dhydro.so's C API, by iso_c_binding.
!
!   use bmif_2_0
!   use bmi_dhydro
!   type(bmi_dhydro_model) :: model
!   double precision, pointer :: runoff(:)
!   if (model%initialize("config.yaml") /= BMI_SUCCESS) print *, bmi_dhydro_last_error()
!   status = model%get_value_ptr("land_surface_water__runoff_depth", runoff)   ! live, no copy
!   status = model%update()
!
! Which Python class is wrapped: initialize_with_class(config, "module:Class"), else
! bmi_dhydro_set_default_class(), else $DHYDRO_BMI_CLASS, else "bmi_dhydro:BmiDeltaModel".
!
! Notes
! * Every procedure returns BMI_SUCCESS or BMI_FAILURE; after a failure bmi_dhydro_last_error()
!   (or model%last_error()) says what went wrong, naming the variable and what was expected.
! * get_value/set_value copy (with size checks and exact type conversions only); get_value_ptr
!   returns a pointer into the model's own float64 buffer, valid until finalize.
! * get_value_at_indices / set_value_at_indices take 1-based indices, as Fortran hosts expect.
! * initialize has intent(out) (as in bmif_2_0): call finalize before initialising the same
!   object again, or use initialize_with_class, which releases a previous model first.
module bmi_dhydro
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_char, c_int, c_double, c_size_t, &
       c_null_char, c_associated, c_f_pointer
  use bmif_2_0
  implicit none
  private

  public :: bmi_dhydro_model
  public :: bmi_dhydro_set_default_class, bmi_dhydro_get_default_class
  public :: bmi_dhydro_last_error, bmi_dhydro_python_init
  public :: BMI_DHYDRO_MAX_ERROR

  integer, parameter :: BMI_DHYDRO_MAX_ERROR = 8192
  integer, parameter :: NAME_LEN = BMI_MAX_VAR_NAME

  type, extends(bmi) :: bmi_dhydro_model
     private
     type(c_ptr) :: handle = c_null_ptr
     character(len=BMI_MAX_COMPONENT_NAME), pointer :: component_name => null()
     character(len=BMI_MAX_VAR_NAME), pointer :: input_names(:) => null()
     character(len=BMI_MAX_VAR_NAME), pointer :: output_names(:) => null()
   contains
     procedure :: initialize => dh_initialize
     procedure :: initialize_with_class => dh_initialize_with_class
     procedure :: update => dh_update
     procedure :: update_until => dh_update_until
     procedure :: finalize => dh_finalize
     procedure :: is_initialized => dh_is_initialized
     procedure, nopass :: last_error => bmi_dhydro_last_error

     procedure :: get_component_name => dh_get_component_name
     procedure :: get_input_item_count => dh_get_input_item_count
     procedure :: get_output_item_count => dh_get_output_item_count
     procedure :: get_input_var_names => dh_get_input_var_names
     procedure :: get_output_var_names => dh_get_output_var_names

     procedure :: get_var_grid => dh_get_var_grid
     procedure :: get_var_type => dh_get_var_type
     procedure :: get_var_dtype => dh_get_var_dtype
     procedure :: get_var_units => dh_get_var_units
     procedure :: get_var_itemsize => dh_get_var_itemsize
     procedure :: get_var_nbytes => dh_get_var_nbytes
     procedure :: get_var_count => dh_get_var_count
     procedure :: get_var_location => dh_get_var_location

     procedure :: get_current_time => dh_get_current_time
     procedure :: get_start_time => dh_get_start_time
     procedure :: get_end_time => dh_get_end_time
     procedure :: get_time_units => dh_get_time_units
     procedure :: get_time_step => dh_get_time_step

     procedure :: get_value_int => dh_get_value_int
     procedure :: get_value_float => dh_get_value_float
     procedure :: get_value_double => dh_get_value_double
     generic :: get_value => get_value_int, get_value_float, get_value_double
     procedure :: get_value_ptr_int => dh_get_value_ptr_int
     procedure :: get_value_ptr_float => dh_get_value_ptr_float
     procedure :: get_value_ptr_double => dh_get_value_ptr_double
     generic :: get_value_ptr => get_value_ptr_int, get_value_ptr_float, get_value_ptr_double
     procedure :: get_value_at_indices_int => dh_get_value_at_indices_int
     procedure :: get_value_at_indices_float => dh_get_value_at_indices_float
     procedure :: get_value_at_indices_double => dh_get_value_at_indices_double
     generic :: get_value_at_indices => get_value_at_indices_int, get_value_at_indices_float, &
          get_value_at_indices_double

     procedure :: set_value_int => dh_set_value_int
     procedure :: set_value_float => dh_set_value_float
     procedure :: set_value_double => dh_set_value_double
     generic :: set_value => set_value_int, set_value_float, set_value_double
     procedure :: set_value_at_indices_int => dh_set_value_at_indices_int
     procedure :: set_value_at_indices_float => dh_set_value_at_indices_float
     procedure :: set_value_at_indices_double => dh_set_value_at_indices_double
     generic :: set_value_at_indices => set_value_at_indices_int, set_value_at_indices_float, &
          set_value_at_indices_double

     procedure :: get_grid_rank => dh_get_grid_rank
     procedure :: get_grid_size => dh_get_grid_size
     procedure :: get_grid_type => dh_get_grid_type
     procedure :: get_grid_shape => dh_get_grid_shape
     procedure :: get_grid_spacing => dh_get_grid_spacing
     procedure :: get_grid_origin => dh_get_grid_origin
     procedure :: get_grid_x => dh_get_grid_x
     procedure :: get_grid_y => dh_get_grid_y
     procedure :: get_grid_z => dh_get_grid_z
     procedure :: get_grid_node_count => dh_get_grid_node_count
     procedure :: get_grid_edge_count => dh_get_grid_edge_count
     procedure :: get_grid_face_count => dh_get_grid_face_count
     procedure :: get_grid_edge_nodes => dh_get_grid_edge_nodes
     procedure :: get_grid_face_edges => dh_get_grid_face_edges
     procedure :: get_grid_face_nodes => dh_get_grid_face_nodes
     procedure :: get_grid_nodes_per_face => dh_get_grid_nodes_per_face
  end type bmi_dhydro_model

  ! ---- the C API of libbmi_dhydro.so (include/bmi_dhydro.h) --------------------------------
  interface
     function c_python_init() bind(C, name="dhydro_python_init") result(rc)
       import :: c_int
       integer(c_int) :: rc
     end function c_python_init

     function c_set_default_class(spec) bind(C, name="dhydro_set_default_class") result(rc)
       import :: c_char, c_int
       character(kind=c_char), dimension(*), intent(in) :: spec
       integer(c_int) :: rc
     end function c_set_default_class

     function c_get_default_class() bind(C, name="dhydro_get_default_class") result(p)
       import :: c_ptr
       type(c_ptr) :: p
     end function c_get_default_class

     function c_copy_last_error(buf, buflen) bind(C, name="dhydro_copy_last_error") result(n)
       import :: c_char, c_int
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: n
     end function c_copy_last_error

     subroutine c_set_last_error(msg) bind(C, name="dhydro_set_last_error")
       import :: c_char
       character(kind=c_char), dimension(*), intent(in) :: msg
     end subroutine c_set_last_error

     function c_create(spec, handle) bind(C, name="dhydro_create") result(rc)
       import :: c_char, c_ptr, c_int
       character(kind=c_char), dimension(*), intent(in) :: spec
       type(c_ptr), intent(out) :: handle
       integer(c_int) :: rc
     end function c_create

     function c_destroy(handle) bind(C, name="dhydro_destroy") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int) :: rc
     end function c_destroy

     function c_initialize(handle, config) bind(C, name="dhydro_initialize") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: config
       integer(c_int) :: rc
     end function c_initialize

     function c_update(handle) bind(C, name="dhydro_update") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int) :: rc
     end function c_update

     function c_update_until(handle, then) bind(C, name="dhydro_update_until") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       real(c_double), value :: then
       integer(c_int) :: rc
     end function c_update_until

     function c_finalize(handle) bind(C, name="dhydro_finalize") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int) :: rc
     end function c_finalize

     function c_get_component_name(handle, buf, buflen) bind(C, name="dhydro_get_component_name") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_component_name

     function c_get_input_item_count(handle, n) bind(C, name="dhydro_get_input_item_count") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), intent(out) :: n
       integer(c_int) :: rc
     end function c_get_input_item_count

     function c_get_output_item_count(handle, n) bind(C, name="dhydro_get_output_item_count") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), intent(out) :: n
       integer(c_int) :: rc
     end function c_get_output_item_count

     function c_get_input_var_name(handle, i, buf, buflen) bind(C, name="dhydro_get_input_var_name") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: i
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_input_var_name

     function c_get_output_var_name(handle, i, buf, buflen) bind(C, name="dhydro_get_output_var_name") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: i
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_output_var_name

     function c_get_var_int(handle, name, val) bind(C, name="dhydro_get_var_grid") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_var_int

     function c_get_var_itemsize(handle, name, val) bind(C, name="dhydro_get_var_itemsize") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_var_itemsize

     function c_get_var_nbytes(handle, name, val) bind(C, name="dhydro_get_var_nbytes") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_var_nbytes

     function c_get_var_count(handle, name, val) bind(C, name="dhydro_get_var_count") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_var_count

     function c_get_var_dtype(handle, name, buf, buflen) bind(C, name="dhydro_get_var_dtype") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_var_dtype

     function c_get_var_units(handle, name, buf, buflen) bind(C, name="dhydro_get_var_units") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_var_units

     function c_get_var_location(handle, name, buf, buflen) bind(C, name="dhydro_get_var_location") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_var_location

     function c_get_current_time(handle, t) bind(C, name="dhydro_get_current_time") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       real(c_double), intent(out) :: t
       integer(c_int) :: rc
     end function c_get_current_time

     function c_get_start_time(handle, t) bind(C, name="dhydro_get_start_time") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       real(c_double), intent(out) :: t
       integer(c_int) :: rc
     end function c_get_start_time

     function c_get_end_time(handle, t) bind(C, name="dhydro_get_end_time") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       real(c_double), intent(out) :: t
       integer(c_int) :: rc
     end function c_get_end_time

     function c_get_time_step(handle, t) bind(C, name="dhydro_get_time_step") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       real(c_double), intent(out) :: t
       integer(c_int) :: rc
     end function c_get_time_step

     function c_get_time_units(handle, buf, buflen) bind(C, name="dhydro_get_time_units") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_time_units

     function c_get_value(handle, name, dest, n, dtype) bind(C, name="dhydro_get_value") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       type(*), dimension(*), intent(inout) :: dest
       integer(c_int), value :: n
       character(kind=c_char), dimension(*), intent(in) :: dtype
       integer(c_int) :: rc
     end function c_get_value

     function c_get_value_ptr(handle, name, ptr, n, dtype) bind(C, name="dhydro_get_value_ptr") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       type(c_ptr), intent(out) :: ptr
       integer(c_int), intent(out) :: n
       character(kind=c_char), dimension(*), intent(in) :: dtype
       integer(c_int) :: rc
     end function c_get_value_ptr

     function c_get_value_at_indices(handle, name, dest, inds, n, dtype) &
          bind(C, name="dhydro_get_value_at_indices") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       type(*), dimension(*), intent(inout) :: dest
       integer(c_int), dimension(*), intent(in) :: inds
       integer(c_int), value :: n
       character(kind=c_char), dimension(*), intent(in) :: dtype
       integer(c_int) :: rc
     end function c_get_value_at_indices

     function c_set_value(handle, name, src, n, dtype) bind(C, name="dhydro_set_value") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       type(*), dimension(*), intent(in) :: src
       integer(c_int), value :: n
       character(kind=c_char), dimension(*), intent(in) :: dtype
       integer(c_int) :: rc
     end function c_set_value

     function c_set_value_at_indices(handle, name, inds, n, src, dtype) &
          bind(C, name="dhydro_set_value_at_indices") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       character(kind=c_char), dimension(*), intent(in) :: name
       integer(c_int), dimension(*), intent(in) :: inds
       integer(c_int), value :: n
       type(*), dimension(*), intent(in) :: src
       character(kind=c_char), dimension(*), intent(in) :: dtype
       integer(c_int) :: rc
     end function c_set_value_at_indices

     function c_get_grid_rank(handle, grid, val) bind(C, name="dhydro_get_grid_rank") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_grid_rank

     function c_get_grid_size(handle, grid, val) bind(C, name="dhydro_get_grid_size") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_grid_size

     function c_get_grid_node_count(handle, grid, val) bind(C, name="dhydro_get_grid_node_count") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_grid_node_count

     function c_get_grid_edge_count(handle, grid, val) bind(C, name="dhydro_get_grid_edge_count") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_grid_edge_count

     function c_get_grid_face_count(handle, grid, val) bind(C, name="dhydro_get_grid_face_count") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), intent(out) :: val
       integer(c_int) :: rc
     end function c_get_grid_face_count

     function c_get_grid_type(handle, grid, buf, buflen) bind(C, name="dhydro_get_grid_type") result(rc)
       import :: c_ptr, c_char, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       character(kind=c_char), dimension(*), intent(out) :: buf
       integer(c_int), value :: buflen
       integer(c_int) :: rc
     end function c_get_grid_type

     ! one C function per grid array; the Fortran wrappers pick the right one by name
     function c_get_grid_shape(handle, grid, a, n) bind(C, name="dhydro_get_grid_shape") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_shape

     function c_get_grid_edge_nodes(handle, grid, a, n) bind(C, name="dhydro_get_grid_edge_nodes") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_edge_nodes

     function c_get_grid_face_edges(handle, grid, a, n) bind(C, name="dhydro_get_grid_face_edges") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_face_edges

     function c_get_grid_face_nodes(handle, grid, a, n) bind(C, name="dhydro_get_grid_face_nodes") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_face_nodes

     function c_get_grid_nodes_per_face(handle, grid, a, n) bind(C, name="dhydro_get_grid_nodes_per_face") result(rc)
       import :: c_ptr, c_int
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       integer(c_int), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_nodes_per_face

     function c_get_grid_spacing(handle, grid, a, n) bind(C, name="dhydro_get_grid_spacing") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       real(c_double), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_spacing

     function c_get_grid_origin(handle, grid, a, n) bind(C, name="dhydro_get_grid_origin") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       real(c_double), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_origin

     function c_get_grid_x(handle, grid, a, n) bind(C, name="dhydro_get_grid_x") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       real(c_double), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_x

     function c_get_grid_y(handle, grid, a, n) bind(C, name="dhydro_get_grid_y") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       real(c_double), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_y

     function c_get_grid_z(handle, grid, a, n) bind(C, name="dhydro_get_grid_z") result(rc)
       import :: c_ptr, c_int, c_double
       type(c_ptr), value :: handle
       integer(c_int), value :: grid
       real(c_double), dimension(*), intent(out) :: a
       integer(c_int), value :: n
       integer(c_int) :: rc
     end function c_get_grid_z

     function c_strlen(s) bind(C, name="strlen") result(n)
       import :: c_ptr, c_size_t
       type(c_ptr), value :: s
       integer(c_size_t) :: n
     end function c_strlen
  end interface

contains

  ! ==== helpers =================================================================================

  ! NUL-terminated copy of a Fortran string (trailing blanks dropped)
  pure function cstr(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s) // c_null_char
  end function cstr

  ! Fortran string from a NUL-terminated C buffer
  pure function fstr(buf) result(s)
    character(kind=c_char, len=*), intent(in) :: buf
    character(len=:), allocatable :: s
    integer :: n
    n = index(buf, c_null_char) - 1
    if (n < 0) n = len(buf)
    s = buf(1:n)
  end function fstr

  ! numpy dtype names of this compiler's default kinds (robust to -fdefault-real-8 etc.)
  function dtype_int() result(d)
    character(len=8) :: d
    write (d, '("int",i0)') storage_size(0)
    d = trim(d) // c_null_char
  end function dtype_int

  function dtype_real() result(d)
    character(len=10) :: d
    write (d, '("float",i0)') storage_size(0.0)
    d = trim(d) // c_null_char
  end function dtype_real

  function dtype_double() result(d)
    character(len=10) :: d
    write (d, '("float",i0)') storage_size(0.0d0)
    d = trim(d) // c_null_char
  end function dtype_double

  subroutine fail(msg)
    character(len=*), intent(in) :: msg
    call c_set_last_error(cstr(msg))
  end subroutine fail

  ! BMI_SUCCESS when the model is initialised, else records why not
  function ready(self, what) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: what
    integer :: bmi_status
    if (c_associated(self%handle)) then
       bmi_status = BMI_SUCCESS
    else
       call fail(what // ": the model is not initialized (call initialize first, and not after finalize)")
       bmi_status = BMI_FAILURE
    end if
  end function ready

  subroutine free_names(self)
    class(bmi_dhydro_model), intent(inout) :: self
    if (associated(self%component_name)) deallocate(self%component_name)
    if (associated(self%input_names)) deallocate(self%input_names)
    if (associated(self%output_names)) deallocate(self%output_names)
  end subroutine free_names

  ! ==== module procedures ======================================================================

  !> Start the embedded Python now (otherwise the first call does).
  function bmi_dhydro_python_init() result(bmi_status)
    integer :: bmi_status
    bmi_status = c_python_init()
  end function bmi_dhydro_python_init

  !> Choose the Python class ("module:Class" or "/path/file.py:Class") for later initialize calls.
  function bmi_dhydro_set_default_class(class_spec) result(bmi_status)
    character(len=*), intent(in) :: class_spec
    integer :: bmi_status
    bmi_status = c_set_default_class(cstr(class_spec))
  end function bmi_dhydro_set_default_class

  !> The class spec initialize would use now.
  function bmi_dhydro_get_default_class() result(spec)
    character(len=:), allocatable :: spec
    type(c_ptr) :: p
    character(kind=c_char), pointer :: chars(:)
    integer :: n, i
    p = c_get_default_class()
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: spec)
    do i = 1, n
       spec(i:i) = chars(i)
    end do
  end function bmi_dhydro_get_default_class

  !> Message of the last failure in this thread ("" after a successful call).
  function bmi_dhydro_last_error() result(msg)
    character(len=:), allocatable :: msg
    character(kind=c_char, len=BMI_DHYDRO_MAX_ERROR) :: buf
    integer(c_int) :: n
    n = c_copy_last_error(buf, int(len(buf), c_int))
    msg = fstr(buf)
  end function bmi_dhydro_last_error

  ! ==== model control ==========================================================================

  function dh_initialize(self, config_file) result(bmi_status)
    class(bmi_dhydro_model), intent(out) :: self
    character(len=*), intent(in) :: config_file
    integer :: bmi_status
    bmi_status = start_model(self, "", config_file)
  end function dh_initialize

  !> Like initialize, with an explicit Python class; releases a model this object still holds.
  function dh_initialize_with_class(self, config_file, class_spec) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: config_file
    character(len=*), intent(in) :: class_spec
    integer :: bmi_status
    integer(c_int) :: rc
    if (c_associated(self%handle)) then
       rc = c_destroy(self%handle)
       self%handle = c_null_ptr
    end if
    call free_names(self)
    bmi_status = start_model(self, class_spec, config_file)
  end function dh_initialize_with_class

  function start_model(self, class_spec, config_file) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: class_spec, config_file
    integer :: bmi_status
    type(c_ptr) :: h
    integer(c_int) :: rc, n, i
    character(kind=c_char, len=NAME_LEN + 1) :: buf
    character(len=:), allocatable :: saved

    bmi_status = BMI_FAILURE
    rc = c_create(cstr(class_spec), h)
    if (rc /= BMI_SUCCESS) return
    rc = c_initialize(h, cstr(config_file))
    if (rc /= BMI_SUCCESS) then
       rc = c_destroy(h) ! keeps the error message
       return
    end if
    self%handle = h

    ! names are kept here so get_*_var_names can hand out pointers, as bmif_2_0 requires
    allocate(self%component_name)
    rc = c_get_component_name(h, buf, int(len(buf), c_int))
    if (rc /= BMI_SUCCESS) goto 900
    self%component_name = fstr(buf)
    rc = c_get_input_item_count(h, n)
    if (rc /= BMI_SUCCESS) goto 900
    allocate(self%input_names(n))
    do i = 1, n
       rc = c_get_input_var_name(h, i - 1, buf, int(len(buf), c_int))
       if (rc /= BMI_SUCCESS) goto 900
       self%input_names(i) = fstr(buf)
    end do
    rc = c_get_output_item_count(h, n)
    if (rc /= BMI_SUCCESS) goto 900
    allocate(self%output_names(n))
    do i = 1, n
       rc = c_get_output_var_name(h, i - 1, buf, int(len(buf), c_int))
       if (rc /= BMI_SUCCESS) goto 900
       self%output_names(i) = fstr(buf)
    end do
    bmi_status = BMI_SUCCESS
    return

900 continue ! initialised but its names could not be read: undo, keep the message
    saved = bmi_dhydro_last_error()
    rc = c_finalize(h)
    rc = c_destroy(h)
    self%handle = c_null_ptr
    call free_names(self)
    call fail("initialize('" // trim(config_file) // "') succeeded but reading the variable names failed: " &
         // saved)
  end function start_model

  function dh_update(self) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    integer :: bmi_status
    bmi_status = ready(self, "update")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_update(self%handle)
  end function dh_update

  function dh_update_until(self, time) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    double precision, intent(in) :: time
    integer :: bmi_status
    bmi_status = ready(self, "update_until")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_update_until(self%handle, real(time, c_double))
  end function dh_update_until

  function dh_finalize(self) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    integer :: bmi_status
    integer(c_int) :: rc
    bmi_status = ready(self, "finalize")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_finalize(self%handle)
    rc = c_destroy(self%handle) ! keeps a finalize error message
    self%handle = c_null_ptr
    call free_names(self)
  end function dh_finalize

  !> Whether initialize succeeded and finalize has not been called since.
  function dh_is_initialized(self) result(yes)
    class(bmi_dhydro_model), intent(in) :: self
    logical :: yes
    yes = c_associated(self%handle)
  end function dh_is_initialized

  ! ==== model information ======================================================================

  function dh_get_component_name(self, name) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), pointer, intent(out) :: name
    integer :: bmi_status
    name => null()
    bmi_status = ready(self, "get_component_name")
    if (bmi_status /= BMI_SUCCESS) return
    name => self%component_name
  end function dh_get_component_name

  function dh_get_input_item_count(self, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(out) :: count
    integer :: bmi_status
    count = 0
    bmi_status = ready(self, "get_input_item_count")
    if (bmi_status /= BMI_SUCCESS) return
    count = size(self%input_names)
  end function dh_get_input_item_count

  function dh_get_output_item_count(self, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(out) :: count
    integer :: bmi_status
    count = 0
    bmi_status = ready(self, "get_output_item_count")
    if (bmi_status /= BMI_SUCCESS) return
    count = size(self%output_names)
  end function dh_get_output_item_count

  function dh_get_input_var_names(self, names) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), pointer, intent(out) :: names(:)
    integer :: bmi_status
    names => null()
    bmi_status = ready(self, "get_input_var_names")
    if (bmi_status /= BMI_SUCCESS) return
    names => self%input_names
  end function dh_get_input_var_names

  function dh_get_output_var_names(self, names) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), pointer, intent(out) :: names(:)
    integer :: bmi_status
    names => null()
    bmi_status = ready(self, "get_output_var_names")
    if (bmi_status /= BMI_SUCCESS) return
    names => self%output_names
  end function dh_get_output_var_names

  ! ==== variable information ===================================================================

  function dh_get_var_grid(self, name, grid) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(out) :: grid
    integer :: bmi_status
    integer(c_int) :: v
    grid = -1
    bmi_status = ready(self, "get_var_grid")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_int(self%handle, cstr(name), v)
    if (bmi_status == BMI_SUCCESS) grid = v
  end function dh_get_var_grid

  !> Fortran type name: "double precision", "real", "integer" (or the numpy name otherwise).
  function dh_get_var_type(self, name, type) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    character(len=*), intent(out) :: type
    integer :: bmi_status
    character(len=64) :: dtype
    type = ""
    bmi_status = dh_get_var_dtype(self, name, dtype)
    if (bmi_status /= BMI_SUCCESS) return
    if (trim(dtype) // c_null_char == dtype_double()) then
       type = "double precision"
    else if (trim(dtype) // c_null_char == dtype_real()) then
       type = "real"
    else if (trim(dtype) // c_null_char == dtype_int()) then
       type = "integer"
    else if (trim(dtype) == "int64") then
       type = "integer(kind=8)"
    else
       type = dtype
    end if
  end function dh_get_var_type

  !> numpy dtype name of a variable ("float64", "int32", ...).
  function dh_get_var_dtype(self, name, dtype) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    character(len=*), intent(out) :: dtype
    integer :: bmi_status
    character(kind=c_char, len=65) :: buf
    dtype = ""
    bmi_status = ready(self, "get_var_type")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_dtype(self%handle, cstr(name), buf, int(len(buf), c_int))
    if (bmi_status == BMI_SUCCESS) dtype = fstr(buf)
  end function dh_get_var_dtype

  function dh_get_var_units(self, name, units) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    character(len=*), intent(out) :: units
    integer :: bmi_status
    character(kind=c_char, len=BMI_MAX_UNITS_NAME + 1) :: buf
    units = ""
    bmi_status = ready(self, "get_var_units")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_units(self%handle, cstr(name), buf, int(len(buf), c_int))
    if (bmi_status == BMI_SUCCESS) units = fstr(buf)
  end function dh_get_var_units

  function dh_get_var_itemsize(self, name, size) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(out) :: size
    integer :: bmi_status
    integer(c_int) :: v
    size = 0
    bmi_status = ready(self, "get_var_itemsize")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_itemsize(self%handle, cstr(name), v)
    if (bmi_status == BMI_SUCCESS) size = v
  end function dh_get_var_itemsize

  function dh_get_var_nbytes(self, name, nbytes) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(out) :: nbytes
    integer :: bmi_status
    integer(c_int) :: v
    nbytes = 0
    bmi_status = ready(self, "get_var_nbytes")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_nbytes(self%handle, cstr(name), v)
    if (bmi_status == BMI_SUCCESS) nbytes = v
  end function dh_get_var_nbytes

  !> Number of elements of a variable (nbytes / itemsize): the size get_value needs.
  function dh_get_var_count(self, name, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(out) :: count
    integer :: bmi_status
    integer(c_int) :: v
    count = 0
    bmi_status = ready(self, "get_var_count")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_count(self%handle, cstr(name), v)
    if (bmi_status == BMI_SUCCESS) count = v
  end function dh_get_var_count

  function dh_get_var_location(self, name, location) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    character(len=*), intent(out) :: location
    integer :: bmi_status
    character(kind=c_char, len=BMI_MAX_VAR_NAME + 1) :: buf
    location = ""
    bmi_status = ready(self, "get_var_location")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_var_location(self%handle, cstr(name), buf, int(len(buf), c_int))
    if (bmi_status == BMI_SUCCESS) location = fstr(buf)
  end function dh_get_var_location

  ! ==== time ===================================================================================

  function dh_get_current_time(self, time) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    double precision, intent(out) :: time
    integer :: bmi_status
    real(c_double) :: t
    time = 0d0
    bmi_status = ready(self, "get_current_time")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_current_time(self%handle, t)
    if (bmi_status == BMI_SUCCESS) time = t
  end function dh_get_current_time

  function dh_get_start_time(self, time) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    double precision, intent(out) :: time
    integer :: bmi_status
    real(c_double) :: t
    time = 0d0
    bmi_status = ready(self, "get_start_time")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_start_time(self%handle, t)
    if (bmi_status == BMI_SUCCESS) time = t
  end function dh_get_start_time

  function dh_get_end_time(self, time) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    double precision, intent(out) :: time
    integer :: bmi_status
    real(c_double) :: t
    time = 0d0
    bmi_status = ready(self, "get_end_time")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_end_time(self%handle, t)
    if (bmi_status == BMI_SUCCESS) time = t
  end function dh_get_end_time

  function dh_get_time_step(self, time_step) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    double precision, intent(out) :: time_step
    integer :: bmi_status
    real(c_double) :: t
    time_step = 0d0
    bmi_status = ready(self, "get_time_step")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_time_step(self%handle, t)
    if (bmi_status == BMI_SUCCESS) time_step = t
  end function dh_get_time_step

  function dh_get_time_units(self, units) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(out) :: units
    integer :: bmi_status
    character(kind=c_char, len=BMI_MAX_UNITS_NAME + 1) :: buf
    units = ""
    bmi_status = ready(self, "get_time_units")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_time_units(self%handle, buf, int(len(buf), c_int))
    if (bmi_status == BMI_SUCCESS) units = fstr(buf)
  end function dh_get_time_units

  ! ==== getters ================================================================================

  function dh_get_value_int(self, name, dest) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(inout) :: dest(:)
    integer :: bmi_status
    bmi_status = ready(self, "get_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value(self%handle, cstr(name), dest, int(size(dest), c_int), dtype_int())
  end function dh_get_value_int

  function dh_get_value_float(self, name, dest) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    real, intent(inout) :: dest(:)
    integer :: bmi_status
    bmi_status = ready(self, "get_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value(self%handle, cstr(name), dest, int(size(dest), c_int), dtype_real())
  end function dh_get_value_float

  function dh_get_value_double(self, name, dest) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    double precision, intent(inout) :: dest(:)
    integer :: bmi_status
    bmi_status = ready(self, "get_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value(self%handle, cstr(name), dest, int(size(dest), c_int), dtype_double())
  end function dh_get_value_double

  function dh_get_value_ptr_int(self, name, dest_ptr) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, pointer, intent(inout) :: dest_ptr(:)
    integer :: bmi_status
    type(c_ptr) :: p
    integer(c_int) :: n
    bmi_status = ready(self, "get_value_ptr")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_ptr(self%handle, cstr(name), p, n, dtype_int())
    if (bmi_status == BMI_SUCCESS) call c_f_pointer(p, dest_ptr, [n])
  end function dh_get_value_ptr_int

  function dh_get_value_ptr_float(self, name, dest_ptr) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    real, pointer, intent(inout) :: dest_ptr(:)
    integer :: bmi_status
    type(c_ptr) :: p
    integer(c_int) :: n
    bmi_status = ready(self, "get_value_ptr")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_ptr(self%handle, cstr(name), p, n, dtype_real())
    if (bmi_status == BMI_SUCCESS) call c_f_pointer(p, dest_ptr, [n])
  end function dh_get_value_ptr_float

  function dh_get_value_ptr_double(self, name, dest_ptr) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    double precision, pointer, intent(inout) :: dest_ptr(:)
    integer :: bmi_status
    type(c_ptr) :: p
    integer(c_int) :: n
    bmi_status = ready(self, "get_value_ptr")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_ptr(self%handle, cstr(name), p, n, dtype_double())
    if (bmi_status == BMI_SUCCESS) call c_f_pointer(p, dest_ptr, [n])
  end function dh_get_value_ptr_double

  ! shared checks for the *_at_indices procedures: sizes agree, indices in 1..count, then 0-based
  function index_args(self, what, name, n_values, inds, cinds) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: what, name
    integer, intent(in) :: n_values
    integer, intent(in) :: inds(:)
    integer(c_int), allocatable, intent(out) :: cinds(:)
    integer :: bmi_status, i
    integer(c_int) :: count
    character(len=32) :: a, b, c
    bmi_status = BMI_FAILURE
    if (n_values /= size(inds)) then
       write (a, '(i0)') n_values
       write (b, '(i0)') size(inds)
       call fail(what // "('" // trim(name) // "'): wrong array size: " // trim(b) // &
            " indices were given but the values array has " // trim(a) // " elements")
       return
    end if
    if (c_get_var_count(self%handle, cstr(name), count) /= BMI_SUCCESS) return
    do i = 1, size(inds)
       if (inds(i) < 1 .or. inds(i) > count) then
          write (a, '(i0)') inds(i)
          write (b, '(i0)') i
          write (c, '(i0)') count
          call fail(what // "('" // trim(name) // "'): index " // trim(a) // " (element " // trim(b) // &
               " of inds) out of range: valid 1-based indices are 1.." // trim(c))
          return
       end if
    end do
    cinds = int(inds - 1, c_int)
    bmi_status = BMI_SUCCESS
  end function index_args

  function dh_get_value_at_indices_int(self, name, dest, inds) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(inout) :: dest(:)
    integer, intent(in) :: inds(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "get_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "get_value_at_indices", name, size(dest), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_at_indices(self%handle, cstr(name), dest, cinds, int(size(cinds), c_int), dtype_int())
  end function dh_get_value_at_indices_int

  function dh_get_value_at_indices_float(self, name, dest, inds) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    real, intent(inout) :: dest(:)
    integer, intent(in) :: inds(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "get_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "get_value_at_indices", name, size(dest), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_at_indices(self%handle, cstr(name), dest, cinds, int(size(cinds), c_int), dtype_real())
  end function dh_get_value_at_indices_float

  function dh_get_value_at_indices_double(self, name, dest, inds) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    character(len=*), intent(in) :: name
    double precision, intent(inout) :: dest(:)
    integer, intent(in) :: inds(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "get_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "get_value_at_indices", name, size(dest), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_value_at_indices(self%handle, cstr(name), dest, cinds, int(size(cinds), c_int), &
         dtype_double())
  end function dh_get_value_at_indices_double

  ! ==== setters ================================================================================

  function dh_set_value_int(self, name, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    integer, intent(in) :: src(:)
    integer :: bmi_status
    bmi_status = ready(self, "set_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value(self%handle, cstr(name), src, int(size(src), c_int), dtype_int())
  end function dh_set_value_int

  function dh_set_value_float(self, name, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    real, intent(in) :: src(:)
    integer :: bmi_status
    bmi_status = ready(self, "set_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value(self%handle, cstr(name), src, int(size(src), c_int), dtype_real())
  end function dh_set_value_float

  function dh_set_value_double(self, name, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    double precision, intent(in) :: src(:)
    integer :: bmi_status
    bmi_status = ready(self, "set_value")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value(self%handle, cstr(name), src, int(size(src), c_int), dtype_double())
  end function dh_set_value_double

  function dh_set_value_at_indices_int(self, name, inds, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    integer, intent(in) :: inds(:)
    integer, intent(in) :: src(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "set_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "set_value_at_indices", name, size(src), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value_at_indices(self%handle, cstr(name), cinds, int(size(cinds), c_int), src, dtype_int())
  end function dh_set_value_at_indices_int

  function dh_set_value_at_indices_float(self, name, inds, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    integer, intent(in) :: inds(:)
    real, intent(in) :: src(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "set_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "set_value_at_indices", name, size(src), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value_at_indices(self%handle, cstr(name), cinds, int(size(cinds), c_int), src, dtype_real())
  end function dh_set_value_at_indices_float

  function dh_set_value_at_indices_double(self, name, inds, src) result(bmi_status)
    class(bmi_dhydro_model), intent(inout) :: self
    character(len=*), intent(in) :: name
    integer, intent(in) :: inds(:)
    double precision, intent(in) :: src(:)
    integer :: bmi_status
    integer(c_int), allocatable :: cinds(:)
    bmi_status = ready(self, "set_value_at_indices")
    if (bmi_status == BMI_SUCCESS) bmi_status = index_args(self, "set_value_at_indices", name, size(src), inds, cinds)
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_set_value_at_indices(self%handle, cstr(name), cinds, int(size(cinds), c_int), src, &
         dtype_double())
  end function dh_set_value_at_indices_double

  ! ==== grids ==================================================================================

  function dh_get_grid_rank(self, grid, rank) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, intent(out) :: rank
    integer :: bmi_status
    integer(c_int) :: v
    rank = -1
    bmi_status = ready(self, "get_grid_rank")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_rank(self%handle, int(grid, c_int), v)
    if (bmi_status == BMI_SUCCESS) rank = v
  end function dh_get_grid_rank

  function dh_get_grid_size(self, grid, size) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, intent(out) :: size
    integer :: bmi_status
    integer(c_int) :: v
    size = -1
    bmi_status = ready(self, "get_grid_size")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_size(self%handle, int(grid, c_int), v)
    if (bmi_status == BMI_SUCCESS) size = v
  end function dh_get_grid_size

  function dh_get_grid_type(self, grid, type) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    character(len=*), intent(out) :: type
    integer :: bmi_status
    character(kind=c_char, len=BMI_MAX_TYPE_NAME + 1) :: buf
    type = ""
    bmi_status = ready(self, "get_grid_type")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_type(self%handle, int(grid, c_int), buf, int(len(buf), c_int))
    if (bmi_status == BMI_SUCCESS) type = fstr(buf)
  end function dh_get_grid_type

  function dh_get_grid_shape(self, grid, shape) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, dimension(:), intent(out) :: shape
    integer :: bmi_status
    integer(c_int) :: tmp(size(shape))
    bmi_status = ready(self, "get_grid_shape")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_shape(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) shape = tmp
  end function dh_get_grid_shape

  function dh_get_grid_spacing(self, grid, spacing) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    double precision, dimension(:), intent(out) :: spacing
    integer :: bmi_status
    real(c_double) :: tmp(size(spacing))
    bmi_status = ready(self, "get_grid_spacing")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_spacing(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) spacing = tmp
  end function dh_get_grid_spacing

  function dh_get_grid_origin(self, grid, origin) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    double precision, dimension(:), intent(out) :: origin
    integer :: bmi_status
    real(c_double) :: tmp(size(origin))
    bmi_status = ready(self, "get_grid_origin")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_origin(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) origin = tmp
  end function dh_get_grid_origin

  function dh_get_grid_x(self, grid, x) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    double precision, dimension(:), intent(out) :: x
    integer :: bmi_status
    real(c_double) :: tmp(size(x))
    bmi_status = ready(self, "get_grid_x")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_x(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) x = tmp
  end function dh_get_grid_x

  function dh_get_grid_y(self, grid, y) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    double precision, dimension(:), intent(out) :: y
    integer :: bmi_status
    real(c_double) :: tmp(size(y))
    bmi_status = ready(self, "get_grid_y")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_y(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) y = tmp
  end function dh_get_grid_y

  function dh_get_grid_z(self, grid, z) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    double precision, dimension(:), intent(out) :: z
    integer :: bmi_status
    real(c_double) :: tmp(size(z))
    bmi_status = ready(self, "get_grid_z")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_z(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) z = tmp
  end function dh_get_grid_z

  function dh_get_grid_node_count(self, grid, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, intent(out) :: count
    integer :: bmi_status
    integer(c_int) :: v
    count = -1
    bmi_status = ready(self, "get_grid_node_count")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_node_count(self%handle, int(grid, c_int), v)
    if (bmi_status == BMI_SUCCESS) count = v
  end function dh_get_grid_node_count

  function dh_get_grid_edge_count(self, grid, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, intent(out) :: count
    integer :: bmi_status
    integer(c_int) :: v
    count = -1
    bmi_status = ready(self, "get_grid_edge_count")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_edge_count(self%handle, int(grid, c_int), v)
    if (bmi_status == BMI_SUCCESS) count = v
  end function dh_get_grid_edge_count

  function dh_get_grid_face_count(self, grid, count) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, intent(out) :: count
    integer :: bmi_status
    integer(c_int) :: v
    count = -1
    bmi_status = ready(self, "get_grid_face_count")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_face_count(self%handle, int(grid, c_int), v)
    if (bmi_status == BMI_SUCCESS) count = v
  end function dh_get_grid_face_count

  function dh_get_grid_edge_nodes(self, grid, edge_nodes) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, dimension(:), intent(out) :: edge_nodes
    integer :: bmi_status
    integer(c_int) :: tmp(size(edge_nodes))
    bmi_status = ready(self, "get_grid_edge_nodes")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_edge_nodes(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) edge_nodes = tmp
  end function dh_get_grid_edge_nodes

  function dh_get_grid_face_edges(self, grid, face_edges) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, dimension(:), intent(out) :: face_edges
    integer :: bmi_status
    integer(c_int) :: tmp(size(face_edges))
    bmi_status = ready(self, "get_grid_face_edges")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_face_edges(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) face_edges = tmp
  end function dh_get_grid_face_edges

  function dh_get_grid_face_nodes(self, grid, face_nodes) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, dimension(:), intent(out) :: face_nodes
    integer :: bmi_status
    integer(c_int) :: tmp(size(face_nodes))
    bmi_status = ready(self, "get_grid_face_nodes")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_face_nodes(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) face_nodes = tmp
  end function dh_get_grid_face_nodes

  function dh_get_grid_nodes_per_face(self, grid, nodes_per_face) result(bmi_status)
    class(bmi_dhydro_model), intent(in) :: self
    integer, intent(in) :: grid
    integer, dimension(:), intent(out) :: nodes_per_face
    integer :: bmi_status
    integer(c_int) :: tmp(size(nodes_per_face))
    bmi_status = ready(self, "get_grid_nodes_per_face")
    if (bmi_status /= BMI_SUCCESS) return
    bmi_status = c_get_grid_nodes_per_face(self%handle, int(grid, c_int), tmp, int(size(tmp), c_int))
    if (bmi_status == BMI_SUCCESS) nodes_per_face = tmp
  end function dh_get_grid_nodes_per_face

end module bmi_dhydro
