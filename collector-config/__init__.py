"""Ready-made processor configs, shipped inside the package so `driftline demo` finds them."""
