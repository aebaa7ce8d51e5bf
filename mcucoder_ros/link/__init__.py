"""Pure serial-link code: the host twin of firmware/core/mcu_protocol.c."""
