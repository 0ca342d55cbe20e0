"""jaxsim.mr — MR acquisition physics (layer 2)."""
