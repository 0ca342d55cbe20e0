"""jaxsim.kernels — pure imaging physics on arrays (layer 0).

Every kernel is a function of arrays that jit, vmap and grad can transform; it imports
only jax and numpy. Units follow the project convention: lengths in mm, times in
seconds, angles in radians, off-resonance in Hz.
"""
