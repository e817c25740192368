"""Building, sizing and running a generated C library on a Cortex-M board: the boards table
(`boards`), the firmware build and QEMU runner (`firmware`, from `templates/`), the ELF size
breakdown (`elfsize`), the instruction counter (`icount`) and the library's manifest (`manifest`)."""
