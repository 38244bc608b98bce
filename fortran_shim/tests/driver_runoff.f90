! driver_runoff -- Fortran host for the bit-for-bit test (tests/test_fortran_shim.py).
!
!   driver_runoff CONFIG FORCING NSTEPS OUT [CLASS_SPEC]
!
! Initialises the model from CONFIG and steps it NSTEPS times. Before each step it reads one
! record of FORCING (stream file of float64: precipitation rate [n], then air temperature [n])
! and sets both inputs; after the step it reads the runoff depth through get_value (a copy) and
! through the pointer from get_value_ptr (taken once, before the loop: it must stay live), and
! appends [runoff copy (n), runoff via pointer (n), current time (1)] to OUT.
program driver_runoff
  use, intrinsic :: iso_fortran_env, only: error_unit
  use bmif_2_0
  use bmi_dhydro
  implicit none

  character(len=*), parameter :: V_PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
  character(len=*), parameter :: V_TEMP = "land_surface_air__temperature"
  character(len=*), parameter :: V_RUNOFF = "land_surface_water__runoff_depth"

  type(bmi_dhydro_model) :: model
  character(len=4096) :: config, forcing_path, out_path, arg
  character(len=BMI_MAX_TYPE_NAME) :: vtype
  character(len=BMI_MAX_UNITS_NAME) :: units
  integer :: nsteps, n, itemsize, nbytes, grid, grid_size, step, u_in, u_out
  double precision, allocatable :: precip(:), temp(:), runoff(:)
  double precision, pointer :: runoff_ptr(:) => null(), again(:) => null()
  double precision :: t

  if (command_argument_count() < 4) then
     write (error_unit, '(a)') "usage: driver_runoff CONFIG FORCING NSTEPS OUT [CLASS_SPEC]"
     error stop 64
  end if
  call get_command_argument(1, config)
  call get_command_argument(2, forcing_path)
  call get_command_argument(3, arg)
  read (arg, *) nsteps
  call get_command_argument(4, out_path)
  if (command_argument_count() >= 5) then
     call get_command_argument(5, arg)
     call check(bmi_dhydro_set_default_class(trim(arg)), "set_default_class")
  end if

  call check(model%initialize(trim(config)), "initialize")
  call check(model%get_var_itemsize(V_RUNOFF, itemsize), "get_var_itemsize")
  call check(model%get_var_nbytes(V_RUNOFF, nbytes), "get_var_nbytes")
  call check(model%get_var_type(V_RUNOFF, vtype), "get_var_type")
  call check(model%get_var_units(V_RUNOFF, units), "get_var_units")
  call check(model%get_var_grid(V_RUNOFF, grid), "get_var_grid")
  call check(model%get_grid_size(grid, grid_size), "get_grid_size")
  n = nbytes / itemsize
  if (trim(vtype) /= "double precision" .or. itemsize /= 8 .or. n /= grid_size) then
     write (error_unit, *) "driver_runoff: unexpected runoff metadata: type=", trim(vtype), &
          " itemsize=", itemsize, " n=", n, " grid size=", grid_size
     error stop 3
  end if
  allocate(precip(n), temp(n), runoff(n))
  call check(model%get_value_ptr(V_RUNOFF, runoff_ptr), "get_value_ptr")

  open (newunit=u_in, file=trim(forcing_path), access="stream", form="unformatted", status="old", action="read")
  open (newunit=u_out, file=trim(out_path), access="stream", form="unformatted", status="replace", action="write")
  do step = 1, nsteps
     read (u_in) precip, temp
     call check(model%set_value(V_PRECIP, precip), "set_value precipitation")
     call check(model%set_value(V_TEMP, temp), "set_value temperature")
     call check(model%update(), "update")
     call check(model%get_value(V_RUNOFF, runoff), "get_value runoff")
     call check(model%get_value_ptr(V_RUNOFF, again), "get_value_ptr again")
     if (.not. associated(again, runoff_ptr)) then
        write (error_unit, *) "driver_runoff: get_value_ptr returned a different buffer at step", step
        error stop 4
     end if
     call check(model%get_current_time(t), "get_current_time")
     write (u_out) runoff, runoff_ptr, t
  end do
  close (u_in)
  close (u_out)
  call check(model%finalize(), "finalize")
  write (*, '(a,i0,a,i0,a,a,a)') "driver_runoff: OK ", nsteps, " steps, ", n, " units (runoff in ", trim(units), ")"

contains

  subroutine check(status, what)
    integer, intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= BMI_SUCCESS) then
       write (error_unit, '(a,a,a,a)') "driver_runoff: ", what, " failed: ", bmi_dhydro_last_error()
       error stop 2
    end if
  end subroutine check

end program driver_runoff
