"""FastTrack: tabular data to a trained, tracked, served and monitored model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fasttrack")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
