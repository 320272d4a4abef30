"""The ground floor every other package stands on: settings and the SIMGAN_HOME layout, atomic
file writes, the client-error type, image decoding, the safe reading of uploaded archives and the
dataset store.

It imports neither torch nor fastapi, and nothing else of ours (tests/test_layers.py holds us to it).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simgan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
