! land_model -- a small Fortran "land model" that delegates its runoff generation to the Python
! bmi-dhydro model through the Fortran BMI shim (module bmi_dhydro), for the ngen-free case of an
! existing Fortran code that wants the trained model as a component.
!
!   land_model CONFIG FORCING OUTPUT_CSV [SPINUP_YEARS]
!
! Each day the land model
!   1. reads its catchment forcing (precipitation mm/day, air temperature degC) from its own file,
!   2. converts it to the component's units and hands it over with set_value
!      (precipitation rate in mm s-1, temperature in K),
!   3. advances the component one day with update(),
!   4. reads the runoff depth (m over the step) through a pointer to the component's own buffer
!      (get_value_ptr, no copy) and routes it through its own channel store (a linear reservoir per
!      catchment, e-folding time 2 days) to a discharge in m3 s-1.
! It spins up by cycling the forcing SPINUP_YEARS times (default 1), then reports the water
! balance and Nash-Sutcliffe efficiency of daily runoff against the observed streamflow in the
! forcing file, and writes a daily CSV.
program land_model
  use, intrinsic :: iso_fortran_env, only: error_unit
  use bmif_2_0
  use bmi_dhydro
  implicit none

  character(len=*), parameter :: V_PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
  character(len=*), parameter :: V_TEMP = "land_surface_air__temperature"
  character(len=*), parameter :: V_RUNOFF = "land_surface_water__runoff_depth"
  double precision, parameter :: CHANNEL_K_DAYS = 2.0d0

  type(bmi_dhydro_model) :: hydro
  character(len=4096) :: config, forcing_path, out_path, arg
  character(len=BMI_MAX_COMPONENT_NAME), pointer :: name => null()
  character(len=BMI_MAX_UNITS_NAME) :: runoff_units, time_units
  integer :: n_basins, n_days, day, cycle, spinup_years, u, k, grid, n_units
  integer, allocatable :: ymd(:, :)
  double precision, allocatable :: prcp(:, :), tmean(:, :), qobs(:, :)
  double precision, allocatable :: area_m2(:), rate(:), temp_k(:), channel(:), discharge(:)
  double precision, allocatable :: sum_p(:), sum_q(:), sum_obs(:), sum_sq(:), mean_obs(:)
  double precision, allocatable :: sim_mm(:, :), lon(:)
  double precision, pointer :: runoff(:) => null()
  double precision :: dt, inflow, release, nse

  if (command_argument_count() < 3) then
     write (error_unit, '(a)') "usage: land_model CONFIG FORCING OUTPUT_CSV [SPINUP_YEARS]"
     stop 64
  end if
  call get_command_argument(1, config)
  call get_command_argument(2, forcing_path)
  call get_command_argument(3, out_path)
  spinup_years = 1
  if (command_argument_count() >= 4) then
     call get_command_argument(4, arg)
     read (arg, *) spinup_years
  end if

  call read_forcing(trim(forcing_path))

  ! ---- the component -------------------------------------------------------------------------
  call check(hydro%initialize(trim(config)), "initialize " // trim(config))
  call check(hydro%get_component_name(name), "get_component_name")
  call check(hydro%get_var_grid(V_RUNOFF, grid), "get_var_grid")
  call check(hydro%get_grid_size(grid, n_units), "get_grid_size")
  call check(hydro%get_var_units(V_RUNOFF, runoff_units), "get_var_units")
  call check(hydro%get_time_step(dt), "get_time_step")
  call check(hydro%get_time_units(time_units), "get_time_units")
  if (n_units /= n_basins) then
     write (error_unit, '(a,i0,a,i0,a)') "land_model: the component runs ", n_units, &
          " units but the forcing file has ", n_basins, " basins"
     stop 1
  end if
  if (trim(time_units) /= "s" .or. abs(dt - 86400d0) > 0.5d0) then
     write (error_unit, *) "land_model: expected a daily component (86400 s), got ", dt, " ", trim(time_units)
     stop 1
  end if
  allocate(area_m2(n_units), lon(n_units))
  call check(hydro%get_grid_x(grid, lon), "get_grid_x")
  call basin_areas()
  call check(hydro%get_value_ptr(V_RUNOFF, runoff), "get_value_ptr runoff")   ! live view, taken once

  write (*, '(a,a)') "land_model: runoff component: ", trim(name)
  write (*, '(a,i0,a,i0,a,i0,a)') "land_model: ", n_units, " catchments, ", n_days, " days, ", &
       spinup_years, " spin-up year(s)"

  allocate(rate(n_units), temp_k(n_units), channel(n_units), discharge(n_units))
  allocate(sum_p(n_units), sum_q(n_units), sum_obs(n_units), sum_sq(n_units))
  allocate(mean_obs(n_units), sim_mm(n_units, n_days))
  channel = 0d0

  open (newunit=u, file=trim(out_path), status="replace", action="write")
  write (u, '(a)', advance="no") "date"
  do k = 1, n_units
     write (u, '(a,i0,a,i0,a,i0)', advance="no") ",runoff_mm_", k, ",discharge_m3s_", k, ",qobs_mm_", k
  end do
  write (u, '(a)') ""

  do cycle = 0, spinup_years
     do day = 1, n_days
        ! 1-2. hand the forcing over, in the component's units
        rate = prcp(:, day) / 86400d0          ! mm/day -> mm s-1
        temp_k = tmean(:, day) + 273.15d0       ! degC -> K
        call check(hydro%set_value(V_PRECIP, rate), "set_value precipitation")
        call check(hydro%set_value(V_TEMP, temp_k), "set_value temperature")
        ! 3. one day of the Python model
        call check(hydro%update(), "update")
        ! 4. use the runoff (m over the day) through the live pointer: channel routing
        do k = 1, n_units
           inflow = runoff(k) * area_m2(k)                               ! m3 this day
           channel(k) = channel(k) + inflow
           release = channel(k) * (1d0 - exp(-1d0 / CHANNEL_K_DAYS))
           channel(k) = channel(k) - release
           discharge(k) = release / dt                                   ! m3 s-1
        end do
        if (cycle == spinup_years) then
           sim_mm(:, day) = runoff * 1000d0
           write (u, '(i4.4,"-",i2.2,"-",i2.2)', advance="no") ymd(:, day)
           do k = 1, n_units
              write (u, '(3(",",g0.8))', advance="no") sim_mm(k, day), discharge(k), qobs(k, day)
           end do
           write (u, '(a)') ""
        end if
     end do
  end do
  close (u)
  call check(hydro%finalize(), "finalize")

  ! ---- report ------------------------------------------------------------------------------
  write (*, '(a)') "land_model: water year summary (after spin-up)"
  write (*, '(a)') "  basin  lon       P [mm]   runoff sim [mm]  runoff obs [mm]  NSE daily"
  do k = 1, n_units
     sum_p(k) = sum(prcp(k, :))
     sum_q(k) = sum(sim_mm(k, :))
     sum_obs(k) = sum(qobs(k, :), mask=qobs(k, :) >= 0d0)
     mean_obs(k) = sum_obs(k) / max(1, count(qobs(k, :) >= 0d0))
     sum_sq(k) = sum((qobs(k, :) - mean_obs(k))**2, mask=qobs(k, :) >= 0d0)
     nse = 1d0 - sum((sim_mm(k, :) - qobs(k, :))**2, mask=qobs(k, :) >= 0d0) / sum_sq(k)
     write (*, '(2x,i3,2x,f8.3,3(2x,f14.1),2x,f9.3)') k, lon(k), sum_p(k), sum_q(k), sum_obs(k), nse
  end do
  write (*, '(a,a)') "land_model: daily output written to ", trim(out_path)

contains

  subroutine check(status, what)
    integer, intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= BMI_SUCCESS) then
       write (error_unit, '(a,a,a,a)') "land_model: ", what, " failed: ", bmi_dhydro_last_error()
       stop 2
    end if
  end subroutine check

  ! The forcing file: 2 comment lines, "n_basins n_days", then per day
  ! "year month day" and per basin "prcp tmean qobs".
  subroutine read_forcing(path)
    character(len=*), intent(in) :: path
    integer :: unit, d, b, ios
    character(len=256) :: line
    open (newunit=unit, file=path, status="old", action="read", iostat=ios)
    if (ios /= 0) then
       write (error_unit, '(a,a)') "land_model: cannot open forcing file ", path
       stop 1
    end if
    read (unit, '(a)') line
    read (unit, '(a)') line
    read (unit, *) n_basins, n_days
    allocate(ymd(3, n_days), prcp(n_basins, n_days), tmean(n_basins, n_days), qobs(n_basins, n_days))
    do d = 1, n_days
       read (unit, *, iostat=ios) ymd(:, d), (prcp(b, d), tmean(b, d), qobs(b, d), b = 1, n_basins)
       if (ios /= 0) then
          write (error_unit, '(a,i0,a,a)') "land_model: bad forcing record ", d, " in ", path
          stop 1
       end if
    end do
    close (unit)
  end subroutine read_forcing

  ! Catchment areas (m2) from the land model's own catchment table, units.csv next to the forcing
  ! file (the component's config reads the same table): id, area_km2, ...
  subroutine basin_areas()
    character(len=4096) :: table
    character(len=1024) :: line
    integer :: unit, k2, ios, c1, c2
    table = forcing_path(1:index(forcing_path, "/", back=.true.)) // "units.csv"
    open (newunit=unit, file=trim(table), status="old", action="read", iostat=ios)
    if (ios /= 0) then
       write (error_unit, '(a,a)') "land_model: cannot open ", trim(table)
       stop 1
    end if
    read (unit, '(a)') line
    do k2 = 1, n_units
       read (unit, '(a)') line
       c1 = index(line, ",")
       c2 = c1 + index(line(c1 + 1:), ",")
       read (line(c1 + 1:c2 - 1), *) area_m2(k2)
       area_m2(k2) = area_m2(k2) * 1d6     ! km2 -> m2
    end do
    close (unit)
  end subroutine basin_areas

end program land_model
