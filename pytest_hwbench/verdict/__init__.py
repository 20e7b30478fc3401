"""See docs/architecture.md: one package per stage of the data flow."""
