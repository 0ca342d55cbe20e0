"""jaxsim — differentiable physics simulation of labelled cardiac MR and CT images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jaxsim-imaging")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
