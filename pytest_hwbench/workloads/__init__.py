"""See DESIGN.md: one package per stage of the data flow."""
