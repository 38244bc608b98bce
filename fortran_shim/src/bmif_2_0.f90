! bmif_2_0 -- the CSDMS Basic Model Interface 2.0 for Fortran, as an abstract type.
!
! Written for bmi-dhydro from the BMI 2.0 specification (https://bmi.readthedocs.io) so that a
! Fortran host can program against the same abstract type `bmi` as with the CSDMS bmi-fortran
! library: same module name, type name, procedure names, dummy-argument names and intents, with
! integer, real and double precision variants of the getters and setters. Concrete models (here
! `bmi_dhydro_model` in module bmi_dhydro) extend it and add generic names (get_value, ...).
!
! Every function returns BMI_SUCCESS or BMI_FAILURE. Index arguments are 1-based.
module bmif_2_0
  implicit none

  integer, parameter :: BMI_MAX_COMPONENT_NAME = 2048
  integer, parameter :: BMI_MAX_VAR_NAME = 2048
  integer, parameter :: BMI_MAX_TYPE_NAME = 2048
  integer, parameter :: BMI_MAX_UNITS_NAME = 2048

  integer, parameter :: BMI_FAILURE = 1
  integer, parameter :: BMI_SUCCESS = 0

  type, abstract :: bmi
   contains
     ! model control: initialize, run, finalize
     procedure(bmif_initialize), deferred :: initialize
     procedure(bmif_update), deferred :: update
     procedure(bmif_update_until), deferred :: update_until
     procedure(bmif_finalize), deferred :: finalize

     ! model information / exchange items
     procedure(bmif_get_component_name), deferred :: get_component_name
     procedure(bmif_get_input_item_count), deferred :: get_input_item_count
     procedure(bmif_get_output_item_count), deferred :: get_output_item_count
     procedure(bmif_get_input_var_names), deferred :: get_input_var_names
     procedure(bmif_get_output_var_names), deferred :: get_output_var_names

     ! variable information
     procedure(bmif_get_var_grid), deferred :: get_var_grid
     procedure(bmif_get_var_type), deferred :: get_var_type
     procedure(bmif_get_var_units), deferred :: get_var_units
     procedure(bmif_get_var_itemsize), deferred :: get_var_itemsize
     procedure(bmif_get_var_nbytes), deferred :: get_var_nbytes
     procedure(bmif_get_var_location), deferred :: get_var_location

     ! time information
     procedure(bmif_get_current_time), deferred :: get_current_time
     procedure(bmif_get_start_time), deferred :: get_start_time
     procedure(bmif_get_end_time), deferred :: get_end_time
     procedure(bmif_get_time_units), deferred :: get_time_units
     procedure(bmif_get_time_step), deferred :: get_time_step

     ! getters, one per type
     procedure(bmif_get_value_int), deferred :: get_value_int
     procedure(bmif_get_value_float), deferred :: get_value_float
     procedure(bmif_get_value_double), deferred :: get_value_double
     procedure(bmif_get_value_ptr_int), deferred :: get_value_ptr_int
     procedure(bmif_get_value_ptr_float), deferred :: get_value_ptr_float
     procedure(bmif_get_value_ptr_double), deferred :: get_value_ptr_double
     procedure(bmif_get_value_at_indices_int), deferred :: get_value_at_indices_int
     procedure(bmif_get_value_at_indices_float), deferred :: get_value_at_indices_float
     procedure(bmif_get_value_at_indices_double), deferred :: get_value_at_indices_double

     ! setters, one per type
     procedure(bmif_set_value_int), deferred :: set_value_int
     procedure(bmif_set_value_float), deferred :: set_value_float
     procedure(bmif_set_value_double), deferred :: set_value_double
     procedure(bmif_set_value_at_indices_int), deferred :: set_value_at_indices_int
     procedure(bmif_set_value_at_indices_float), deferred :: set_value_at_indices_float
     procedure(bmif_set_value_at_indices_double), deferred :: set_value_at_indices_double

     ! grid information
     procedure(bmif_get_grid_rank), deferred :: get_grid_rank
     procedure(bmif_get_grid_size), deferred :: get_grid_size
     procedure(bmif_get_grid_type), deferred :: get_grid_type

     ! uniform rectilinear grids
     procedure(bmif_get_grid_shape), deferred :: get_grid_shape
     procedure(bmif_get_grid_spacing), deferred :: get_grid_spacing
     procedure(bmif_get_grid_origin), deferred :: get_grid_origin

     ! non-uniform rectilinear and curvilinear grids
     procedure(bmif_get_grid_x), deferred :: get_grid_x
     procedure(bmif_get_grid_y), deferred :: get_grid_y
     procedure(bmif_get_grid_z), deferred :: get_grid_z

     ! unstructured grids
     procedure(bmif_get_grid_node_count), deferred :: get_grid_node_count
     procedure(bmif_get_grid_edge_count), deferred :: get_grid_edge_count
     procedure(bmif_get_grid_face_count), deferred :: get_grid_face_count
     procedure(bmif_get_grid_edge_nodes), deferred :: get_grid_edge_nodes
     procedure(bmif_get_grid_face_edges), deferred :: get_grid_face_edges
     procedure(bmif_get_grid_face_nodes), deferred :: get_grid_face_nodes
     procedure(bmif_get_grid_nodes_per_face), deferred :: get_grid_nodes_per_face
  end type bmi

  abstract interface

     ! ---- model control -------------------------------------------------------------------

     ! Read the configuration file and make the model ready to run.
     function bmif_initialize(self, config_file) result(bmi_status)
       import :: bmi
       class(bmi), intent(out) :: self
       character(len=*), intent(in) :: config_file
       integer :: bmi_status
     end function bmif_initialize

     ! Advance the model by one time step.
     function bmif_update(self) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       integer :: bmi_status
     end function bmif_update

     ! Advance the model to the given model time.
     function bmif_update_until(self, time) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       double precision, intent(in) :: time
       integer :: bmi_status
     end function bmif_update_until

     ! Release the model's resources.
     function bmif_finalize(self) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       integer :: bmi_status
     end function bmif_finalize

     ! ---- model information ---------------------------------------------------------------

     ! Point `name` at the model's name.
     function bmif_get_component_name(self, name) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), pointer, intent(out) :: name
       integer :: bmi_status
     end function bmif_get_component_name

     ! Number of variables the model can take from other components.
     function bmif_get_input_item_count(self, count) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(out) :: count
       integer :: bmi_status
     end function bmif_get_input_item_count

     ! Number of variables the model can give to other components.
     function bmif_get_output_item_count(self, count) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(out) :: count
       integer :: bmi_status
     end function bmif_get_output_item_count

     ! Point `names` at the list of input variable names.
     function bmif_get_input_var_names(self, names) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), pointer, intent(out) :: names(:)
       integer :: bmi_status
     end function bmif_get_input_var_names

     ! Point `names` at the list of output variable names.
     function bmif_get_output_var_names(self, names) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), pointer, intent(out) :: names(:)
       integer :: bmi_status
     end function bmif_get_output_var_names

     ! ---- variable information ------------------------------------------------------------

     ! Identifier of the grid a variable is defined on.
     function bmif_get_var_grid(self, name, grid) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, intent(out) :: grid
       integer :: bmi_status
     end function bmif_get_var_grid

     ! Data type of a variable, as a string.
     function bmif_get_var_type(self, name, type) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       character(len=*), intent(out) :: type
       integer :: bmi_status
     end function bmif_get_var_type

     ! Units of a variable (UDUNITS convention).
     function bmif_get_var_units(self, name, units) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       character(len=*), intent(out) :: units
       integer :: bmi_status
     end function bmif_get_var_units

     ! Size of one element of a variable, in bytes.
     function bmif_get_var_itemsize(self, name, size) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, intent(out) :: size
       integer :: bmi_status
     end function bmif_get_var_itemsize

     ! Size of all of a variable, in bytes.
     function bmif_get_var_nbytes(self, name, nbytes) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, intent(out) :: nbytes
       integer :: bmi_status
     end function bmif_get_var_nbytes

     ! Where on the grid a variable lives: node, edge or face.
     function bmif_get_var_location(self, name, location) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       character(len=*), intent(out) :: location
       integer :: bmi_status
     end function bmif_get_var_location

     ! ---- time ----------------------------------------------------------------------------

     ! Current model time.
     function bmif_get_current_time(self, time) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       double precision, intent(out) :: time
       integer :: bmi_status
     end function bmif_get_current_time

     ! Model start time.
     function bmif_get_start_time(self, time) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       double precision, intent(out) :: time
       integer :: bmi_status
     end function bmif_get_start_time

     ! Model end time.
     function bmif_get_end_time(self, time) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       double precision, intent(out) :: time
       integer :: bmi_status
     end function bmif_get_end_time

     ! Units of all time values.
     function bmif_get_time_units(self, units) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(out) :: units
       integer :: bmi_status
     end function bmif_get_time_units

     ! Length of one model time step.
     function bmif_get_time_step(self, time_step) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       double precision, intent(out) :: time_step
       integer :: bmi_status
     end function bmif_get_time_step

     ! ---- getters -------------------------------------------------------------------------

     ! Copy of a variable's values (flattened) into an integer array.
     function bmif_get_value_int(self, name, dest) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, intent(inout) :: dest(:)
       integer :: bmi_status
     end function bmif_get_value_int

     ! Copy of a variable's values (flattened) into a real array.
     function bmif_get_value_float(self, name, dest) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       real, intent(inout) :: dest(:)
       integer :: bmi_status
     end function bmif_get_value_float

     ! Copy of a variable's values (flattened) into a double precision array.
     function bmif_get_value_double(self, name, dest) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       double precision, intent(inout) :: dest(:)
       integer :: bmi_status
     end function bmif_get_value_double

     ! Pointer to an integer variable's values (no copy).
     function bmif_get_value_ptr_int(self, name, dest_ptr) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, pointer, intent(inout) :: dest_ptr(:)
       integer :: bmi_status
     end function bmif_get_value_ptr_int

     ! Pointer to a real variable's values (no copy).
     function bmif_get_value_ptr_float(self, name, dest_ptr) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       real, pointer, intent(inout) :: dest_ptr(:)
       integer :: bmi_status
     end function bmif_get_value_ptr_float

     ! Pointer to a double precision variable's values (no copy).
     function bmif_get_value_ptr_double(self, name, dest_ptr) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       double precision, pointer, intent(inout) :: dest_ptr(:)
       integer :: bmi_status
     end function bmif_get_value_ptr_double

     ! Integer values at the given (flattened, 1-based) indices.
     function bmif_get_value_at_indices_int(self, name, dest, inds) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       integer, intent(inout) :: dest(:)
       integer, intent(in) :: inds(:)
       integer :: bmi_status
     end function bmif_get_value_at_indices_int

     ! Real values at the given (flattened, 1-based) indices.
     function bmif_get_value_at_indices_float(self, name, dest, inds) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       real, intent(inout) :: dest(:)
       integer, intent(in) :: inds(:)
       integer :: bmi_status
     end function bmif_get_value_at_indices_float

     ! Double precision values at the given (flattened, 1-based) indices.
     function bmif_get_value_at_indices_double(self, name, dest, inds) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       character(len=*), intent(in) :: name
       double precision, intent(inout) :: dest(:)
       integer, intent(in) :: inds(:)
       integer :: bmi_status
     end function bmif_get_value_at_indices_double

     ! ---- setters -------------------------------------------------------------------------

     ! Overwrite all values of an integer variable.
     function bmif_set_value_int(self, name, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       integer, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_int

     ! Overwrite all values of a real variable.
     function bmif_set_value_float(self, name, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       real, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_float

     ! Overwrite all values of a double precision variable.
     function bmif_set_value_double(self, name, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       double precision, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_double

     ! Overwrite integer values at the given (1-based) indices.
     function bmif_set_value_at_indices_int(self, name, inds, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       integer, intent(in) :: inds(:)
       integer, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_at_indices_int

     ! Overwrite real values at the given (1-based) indices.
     function bmif_set_value_at_indices_float(self, name, inds, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       integer, intent(in) :: inds(:)
       real, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_at_indices_float

     ! Overwrite double precision values at the given (1-based) indices.
     function bmif_set_value_at_indices_double(self, name, inds, src) result(bmi_status)
       import :: bmi
       class(bmi), intent(inout) :: self
       character(len=*), intent(in) :: name
       integer, intent(in) :: inds(:)
       double precision, intent(in) :: src(:)
       integer :: bmi_status
     end function bmif_set_value_at_indices_double

     ! ---- grids ---------------------------------------------------------------------------

     ! Number of dimensions of a grid.
     function bmif_get_grid_rank(self, grid, rank) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, intent(out) :: rank
       integer :: bmi_status
     end function bmif_get_grid_rank

     ! Total number of elements of a grid.
     function bmif_get_grid_size(self, grid, size) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, intent(out) :: size
       integer :: bmi_status
     end function bmif_get_grid_size

     ! Kind of grid, as a string (e.g. "unstructured", "uniform_rectilinear").
     function bmif_get_grid_type(self, grid, type) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       character(len=*), intent(out) :: type
       integer :: bmi_status
     end function bmif_get_grid_type

     ! Number of nodes along each dimension of a structured grid.
     function bmif_get_grid_shape(self, grid, shape) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, dimension(:), intent(out) :: shape
       integer :: bmi_status
     end function bmif_get_grid_shape

     ! Node spacing along each dimension of a uniform rectilinear grid.
     function bmif_get_grid_spacing(self, grid, spacing) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       double precision, dimension(:), intent(out) :: spacing
       integer :: bmi_status
     end function bmif_get_grid_spacing

     ! Coordinates of the first node of a uniform rectilinear grid.
     function bmif_get_grid_origin(self, grid, origin) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       double precision, dimension(:), intent(out) :: origin
       integer :: bmi_status
     end function bmif_get_grid_origin

     ! x coordinates of the grid nodes.
     function bmif_get_grid_x(self, grid, x) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       double precision, dimension(:), intent(out) :: x
       integer :: bmi_status
     end function bmif_get_grid_x

     ! y coordinates of the grid nodes.
     function bmif_get_grid_y(self, grid, y) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       double precision, dimension(:), intent(out) :: y
       integer :: bmi_status
     end function bmif_get_grid_y

     ! z coordinates of the grid nodes.
     function bmif_get_grid_z(self, grid, z) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       double precision, dimension(:), intent(out) :: z
       integer :: bmi_status
     end function bmif_get_grid_z

     ! Number of nodes of an unstructured grid.
     function bmif_get_grid_node_count(self, grid, count) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, intent(out) :: count
       integer :: bmi_status
     end function bmif_get_grid_node_count

     ! Number of edges of an unstructured grid.
     function bmif_get_grid_edge_count(self, grid, count) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, intent(out) :: count
       integer :: bmi_status
     end function bmif_get_grid_edge_count

     ! Number of faces of an unstructured grid.
     function bmif_get_grid_face_count(self, grid, count) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, intent(out) :: count
       integer :: bmi_status
     end function bmif_get_grid_face_count

     ! The two node indices of every edge.
     function bmif_get_grid_edge_nodes(self, grid, edge_nodes) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, dimension(:), intent(out) :: edge_nodes
       integer :: bmi_status
     end function bmif_get_grid_edge_nodes

     ! The edge indices of every face.
     function bmif_get_grid_face_edges(self, grid, face_edges) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, dimension(:), intent(out) :: face_edges
       integer :: bmi_status
     end function bmif_get_grid_face_edges

     ! The node indices of every face.
     function bmif_get_grid_face_nodes(self, grid, face_nodes) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, dimension(:), intent(out) :: face_nodes
       integer :: bmi_status
     end function bmif_get_grid_face_nodes

     ! Number of nodes of every face.
     function bmif_get_grid_nodes_per_face(self, grid, nodes_per_face) result(bmi_status)
       import :: bmi
       class(bmi), intent(in) :: self
       integer, intent(in) :: grid
       integer, dimension(:), intent(out) :: nodes_per_face
       integer :: bmi_status
     end function bmif_get_grid_nodes_per_face

  end interface

end module bmif_2_0
