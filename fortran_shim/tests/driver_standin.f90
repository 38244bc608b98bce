! driver_standin -- every bmif_2_0 procedure family of bmi_dhydro_model against the pure-numpy
! stand-in (fortran_shim/tests/standin_bmi.py): integer/real/double getters, pointers and setters,
! index variants, a size-1 variable, grids, time, two instances, and a model exception.
!
!   driver_standin CONFIG FAILING_CONFIG CLASS_SPEC
!
! Prints "key|status|values..." lines (doubles with 17 significant digits, so values round-trip);
! the Python test computes the expected values with the stand-in itself.
program driver_standin
  use bmif_2_0
  use bmi_dhydro
  implicit none

  character(len=*), parameter :: V_PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
  character(len=*), parameter :: V_TEMP = "land_surface_air__temperature"
  character(len=*), parameter :: V_RUNOFF = "land_surface_water__runoff_depth"
  character(len=*), parameter :: V_COUNT = "standin__step_count"
  character(len=*), parameter :: V_LABEL = "standin__unit_label"
  character(len=*), parameter :: V_RATIO = "standin__ratio"
  character(len=*), parameter :: V_TOTAL = "standin__total_runoff"
  character(len=*), parameter :: V_FIELD = "standin__field"

  type(bmi_dhydro_model) :: a, b, failing
  character(len=4096) :: config, failing_config, spec
  character(len=BMI_MAX_COMPONENT_NAME), pointer :: name => null()
  character(len=BMI_MAX_VAR_NAME), pointer :: names(:) => null()
  character(len=BMI_MAX_TYPE_NAME) :: str
  integer :: n, i, status, ival, counts(3), ibuf3(3), shape(2), edge_nodes(10), face_edges(6)
  integer :: face_nodes(6), nodes_per_face(2), one_int(1)
  double precision :: d3(3), t, dbuf(6), total(1)
  real :: r3(3), one_real(1)
  double precision, pointer :: dptr(:) => null()
  real, pointer :: rptr(:) => null()
  integer, pointer :: iptr(:) => null()

  call get_command_argument(1, config)
  call get_command_argument(2, failing_config)
  call get_command_argument(3, spec)
  call put_s("set_default_class", bmi_dhydro_set_default_class(trim(spec)), bmi_dhydro_get_default_class())

  call put_s("initialize", a%initialize(trim(config)), "")
  status = a%get_component_name(name)
  call put_s("component_name", status, trim(name))
  status = a%get_input_item_count(n)
  call put_i("input_item_count", status, [n])
  status = a%get_input_var_names(names)
  do i = 1, size(names)
     call put_s("input_var_name", status, trim(names(i)))
  end do
  status = a%get_output_var_names(names)
  do i = 1, size(names)
     call put_s("output_var_name", status, trim(names(i)))
  end do

  ! variable information
  status = a%get_var_type(V_PRECIP, str);  call put_s("type_precip", status, trim(str))
  status = a%get_var_type(V_COUNT, str);   call put_s("type_count", status, trim(str))
  status = a%get_var_type(V_LABEL, str);   call put_s("type_label", status, trim(str))
  status = a%get_var_type(V_RATIO, str);   call put_s("type_ratio", status, trim(str))
  status = a%get_var_units(V_PRECIP, str); call put_s("units_precip", status, trim(str))
  status = a%get_var_location(V_FIELD, str); call put_s("location_field", status, trim(str))
  status = a%get_var_itemsize(V_RATIO, ival); call put_i("itemsize_ratio", status, [ival])
  status = a%get_var_nbytes(V_LABEL, ival); call put_i("nbytes_label", status, [ival])
  status = a%get_var_grid(V_FIELD, ival); call put_i("grid_field", status, [ival])

  ! time
  status = a%get_start_time(t);  call put_d("start_time", status, [t])
  status = a%get_end_time(t);    call put_d("end_time", status, [t])
  status = a%get_time_step(t);   call put_d("time_step", status, [t])
  status = a%get_time_units(str); call put_s("time_units", status, trim(str))

  ! doubles: set forcing, step twice, read back
  call put_s("set_precip", a%set_value(V_PRECIP, [1.0d-3, 2.5d-3, 0.0d0]), "")
  call put_s("set_temp", a%set_value(V_TEMP, [270.15d0, 280.15d0, 290.65d0]), "")
  call put_s("update1", a%update(), "")
  call put_s("update2", a%update(), "")
  status = a%get_current_time(t); call put_d("current_time", status, [t])
  status = a%get_value(V_RUNOFF, d3); call put_d("runoff", status, d3)
  status = a%get_value_ptr(V_RUNOFF, dptr); call put_d("runoff_ptr", status, dptr)
  status = a%get_value_at_indices(V_RUNOFF, dbuf(1:2), [3, 1]); call put_d("runoff_at_3_1", status, dbuf(1:2))
  status = a%get_value_ptr(V_TOTAL, dptr); call put_d("total_ptr", status, dptr)
  status = a%get_value(V_TOTAL, total); call put_d("total", status, total)

  ! integers (int32 variable): copy, pointer, set, at indices
  status = a%get_value(V_COUNT, counts); call put_i("count", status, counts)
  status = a%get_value_ptr(V_COUNT, iptr); call put_i("count_ptr", status, iptr)
  call put_s("set_count", a%set_value(V_COUNT, [7, 8, 9]), "")
  call put_i("count_ptr_after_set", BMI_SUCCESS, iptr)
  call put_s("set_count_at_2", a%set_value_at_indices(V_COUNT, [2], [42]), "")
  status = a%get_value_at_indices(V_COUNT, one_int, [2]); call put_i("count_at_2", status, one_int)
  status = a%get_value(V_COUNT, ibuf3(1:2)); call put_i("count_wrong_size", status, [0])

  ! int64 variable through the integer interface: exact when the values fit, else refused
  status = a%get_value_at_indices(V_LABEL, one_int, [2]); call put_i("label_at_2", status, one_int)
  status = a%get_value(V_LABEL, ibuf3); call put_s("label_all", status, bmi_dhydro_last_error())
  status = a%get_value_ptr(V_LABEL, iptr); call put_s("label_ptr_int", status, bmi_dhydro_last_error())

  ! reals (float32 variable): copy, widened copy, pointer written by the host, refused narrowing
  status = a%get_value(V_RATIO, r3); call put_r("ratio", status, r3)
  status = a%get_value(V_RATIO, d3); call put_d("ratio_as_double", status, d3)
  status = a%get_value_ptr(V_RATIO, rptr); call put_r("ratio_ptr", status, rptr)
  rptr(2) = 9.5
  status = a%get_value(V_RATIO, r3); call put_r("ratio_after_ptr_write", status, r3)
  call put_s("set_ratio_at_1", a%set_value_at_indices(V_RATIO, [1], [0.125]), "")
  status = a%get_value_at_indices(V_RATIO, one_real, [1]); call put_r("ratio_at_1", status, one_real)
  status = a%set_value(V_RATIO, [1d0, 2d0, 3d0]); call put_s("set_ratio_double", status, bmi_dhydro_last_error())
  call put_s("set_precip_from_real", a%set_value(V_PRECIP, [0.5, 0.25, 0.125]), "")
  status = a%get_value(V_PRECIP, d3); call put_d("precip_from_real", status, d3)

  ! grids
  status = a%get_grid_type(0, str); call put_s("grid0_type", status, trim(str))
  status = a%get_grid_x(0, d3); call put_d("grid0_x", status, d3)
  status = a%get_grid_type(1, str); call put_s("grid1_type", status, trim(str))
  status = a%get_grid_rank(1, ival); call put_i("grid1_rank", status, [ival])
  status = a%get_grid_size(1, ival); call put_i("grid1_size", status, [ival])
  status = a%get_grid_shape(1, shape); call put_i("grid1_shape", status, shape)
  status = a%get_grid_spacing(1, dbuf(1:2)); call put_d("grid1_spacing", status, dbuf(1:2))
  status = a%get_grid_origin(1, dbuf(1:2)); call put_d("grid1_origin", status, dbuf(1:2))
  status = a%get_grid_x(1, dbuf(1:3)); call put_d("grid1_x", status, dbuf(1:3))
  status = a%get_grid_y(1, dbuf(1:2)); call put_d("grid1_y", status, dbuf(1:2))
  status = a%get_grid_z(1, dbuf(1:1)); call put_s("grid1_z", status, bmi_dhydro_last_error())
  status = a%get_grid_node_count(2, ival); call put_i("grid2_nodes", status, [ival])
  status = a%get_grid_edge_count(2, ival); call put_i("grid2_edges", status, [ival])
  status = a%get_grid_face_count(2, ival); call put_i("grid2_faces", status, [ival])
  status = a%get_grid_edge_nodes(2, edge_nodes); call put_i("grid2_edge_nodes", status, edge_nodes)
  status = a%get_grid_face_edges(2, face_edges); call put_i("grid2_face_edges", status, face_edges)
  status = a%get_grid_face_nodes(2, face_nodes); call put_i("grid2_face_nodes", status, face_nodes)
  status = a%get_grid_nodes_per_face(2, nodes_per_face); call put_i("grid2_nodes_per_face", status, nodes_per_face)
  status = a%get_grid_y(2, dbuf(1:4)); call put_d("grid2_y", status, dbuf(1:4))

  ! a second, independent instance of the same class
  call put_s("b_initialize", b%initialize(trim(config)), "")
  call put_s("b_update_until", b%update_until(5 * 3600d0), "")
  status = b%get_current_time(t); call put_d("b_current_time", status, [t])
  status = b%get_value(V_COUNT, counts); call put_i("b_count", status, counts)
  status = a%get_value(V_COUNT, counts); call put_i("a_count_unchanged", status, counts)

  ! an exception inside the model's update
  call put_s("failing_initialize", failing%initialize(trim(failing_config)), "")
  status = failing%update(); call put_s("failing_update", status, bmi_dhydro_last_error())
  call put_s("failing_finalize", failing%finalize(), "")

  call put_s("a_finalize", a%finalize(), "")
  call put_s("b_finalize", b%finalize(), "")
  status = a%get_component_name(name)
  call put_s("name_after_finalize", status, bmi_dhydro_last_error())

contains

  subroutine put_s(key, st, text)
    character(len=*), intent(in) :: key, text
    integer, intent(in) :: st
    write (*, '(a,"|",i0,"|",a)') key, st, text
  end subroutine put_s

  subroutine put_d(key, st, v)
    character(len=*), intent(in) :: key
    integer, intent(in) :: st
    double precision, intent(in) :: v(:)
    character(len=64) :: item
    character(len=:), allocatable :: line
    integer :: k
    line = ""
    do k = 1, size(v)
       write (item, '(es26.17e3)') v(k)
       line = line // " " // trim(adjustl(item))
    end do
    write (*, '(a,"|",i0,"|",a)') key, st, trim(adjustl(line))
  end subroutine put_d

  subroutine put_r(key, st, v)
    character(len=*), intent(in) :: key
    integer, intent(in) :: st
    real, intent(in) :: v(:)
    call put_d(key, st, dble(v))
  end subroutine put_r

  subroutine put_i(key, st, v)
    character(len=*), intent(in) :: key
    integer, intent(in) :: st
    integer, intent(in) :: v(:)
    character(len=32) :: item
    character(len=:), allocatable :: line
    integer :: k
    line = ""
    do k = 1, size(v)
       write (item, '(i0)') v(k)
       line = line // " " // trim(item)
    end do
    write (*, '(a,"|",i0,"|",a)') key, st, trim(adjustl(line))
  end subroutine put_i

end program driver_standin
