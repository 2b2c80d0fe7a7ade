"""The one place the fastcells version is written: read by the build (pyproject.toml's dynamic
version), by fastcells.__version__ and by `fastcells --version`."""
__version__ = "0.1.0"
